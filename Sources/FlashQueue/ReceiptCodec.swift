/// Receipt handles of the database backends: `<queue id>-<row>-<delivery token>`.
/// The token is random per delivery, so the handle of an earlier delivery no longer matches.
public enum ReceiptCodec {
    /// The handle of delivery `token` of the message at row `seq` of queue `queueID`.
    public static func encode(queueID: Int64, seq: Int64, token: Int64) -> ReceiptHandle {
        ReceiptHandle("\(queueID)-\(seq)-\(String(UInt64(bitPattern: token), radix: 16))")
    }

    /// The row and token a handle names; throws for a malformed handle or another queue's.
    public static func decode(_ handle: ReceiptHandle, queueID: Int64) throws(QueueError) -> (seq: Int64, token: Int64) {
        let parts = handle.rawValue.split(separator: "-", omittingEmptySubsequences: false)
        guard parts.count == 3,
              let queue = Int64(parts[0]), queue == queueID,
              let seq = Int64(parts[1]),
              let token = UInt64(parts[2], radix: 16)
        else { throw .receiptHandleInvalid(handle.rawValue) }
        return (seq, Int64(bitPattern: token))
    }
}
