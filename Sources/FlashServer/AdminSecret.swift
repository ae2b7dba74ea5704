import FlashCore

/// The secret the admin routes (restock, prices, purge) need, always: `Authorization: Bearer
/// <secret>`. Trusting clients by their address would open them to every request behind a
/// proxy or sidecar on the same host.
///
/// Taken from, in order: `--admin-token` or `FLASHSALE_ADMIN_TOKEN` (the environment keeps it
/// out of `ps`), `--admin-token-file` or `FLASHSALE_ADMIN_TOKEN_FILE`; else the file
/// `flashsale.admin-token` beside the database file, created owner-only (0600) with a random
/// secret when it does not exist (``SharedSecret``). Processes sharing a database file (one
/// host) share it.
public enum AdminSecret {
    /// The file the secret is generated into when none is configured: beside `dataPath`.
    public static func defaultFile(forData dataPath: String) -> String {
        SharedSecret.file("flashsale.admin-token", beside: dataPath)
    }

    /// Resolves the secret (see ``AdminSecret``).
    public static func resolve(token: String?, file: String?, dataPath: String) throws -> SharedSecret.Resolved {
        try SharedSecret.resolve("admin token", token: token, file: file, defaultFile: defaultFile(forData: dataPath), generate: true,
                                 hint: "set FLASHSALE_ADMIN_TOKEN or --admin-token-file")!
    }
}
