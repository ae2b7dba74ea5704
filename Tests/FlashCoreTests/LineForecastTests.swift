import FlashCore
import Testing

/// The admission forecast as a state machine, on made-up instants.
@Suite("Line forecast")
struct LineForecastTests {
    let t0 = ContinuousClock.now

    func at(_ milliseconds: Int) -> ContinuousClock.Instant { t0 + .milliseconds(milliseconds) }

    /// A forecast whose groups have taken `groupTime` (10 calls to a group).
    func timed(_ groupTime: Duration) -> LineForecast {
        var forecast = LineForecast(groupLimit: 10)
        forecast.groupStarted(at: t0)
        forecast.groupEnded(at: t0 + groupTime)
        return forecast
    }

    @Test func beforeAnyGroupWasTimedNothingIsRefusedOnArrival() {
        var forecast = LineForecast(groupLimit: 10)
        #expect(forecast.admits(ahead: 0, running: false, patience: .milliseconds(1), at: at(0)))
        forecast.groupStarted(at: at(0))
        #expect(forecast.admits(ahead: 1_000_000, running: true, patience: .seconds(1), at: at(10)))
        #expect(forecast.limit(patience: .seconds(1), at: at(10)) == nil)
    }

    @Test func aCallIsRefusedWhenTheFullGroupsAheadOfItWouldTakeItsPatience() {
        // Groups of 10 calls take 100 ms: with 1.1 s to be answered (990 ms less the margin),
        // 90 calls may wait ahead (nine groups, then its own).
        let forecast = timed(.milliseconds(100))
        let now = at(1000)
        #expect(forecast.admits(ahead: 89, running: false, patience: .milliseconds(1100), at: now))
        #expect(!forecast.admits(ahead: 90, running: false, patience: .milliseconds(1100), at: now))
        // A running group's time counts too (one has just started).
        var running = forecast
        running.groupStarted(at: now)
        #expect(running.admits(ahead: 79, running: true, patience: .milliseconds(1100), at: now))
        #expect(!running.admits(ahead: 89, running: true, patience: .milliseconds(1100), at: now))
        #expect(!forecast.admits(ahead: 10_000, running: true, patience: .milliseconds(1100), at: now))
        #expect(forecast.limit(patience: .milliseconds(1100), at: now) == 90)
        #expect(forecast.limit(patience: .milliseconds(250), at: now) == 20)
        #expect(forecast.limit(patience: .milliseconds(100), at: now) == 0)
        // Whatever waits, an idle line lets the call in: it starts at once.
        #expect(forecast.admits(ahead: 0, running: false, patience: .milliseconds(1), at: now))
    }

    @Test func theRunningGroupsRemainingTimeCounts() {
        var forecast = timed(.milliseconds(100))
        forecast.groupStarted(at: at(1000))
        // 10 ms into a 100 ms group: 90 ms left, then a full group ahead, then its own.
        #expect(!forecast.admits(ahead: 10, running: true, patience: .milliseconds(250), at: at(1010)))
        // 80 ms into it: 20 ms left, then 200 ms.
        #expect(forecast.admits(ahead: 10, running: true, patience: .milliseconds(250), at: at(1080)))
        // 250 ms into it, overdue by 150 ms: expected to take 150 ms more, then 200 ms.
        #expect(!forecast.admits(ahead: 10, running: true, patience: .milliseconds(350), at: at(1250)))
        #expect(forecast.admits(ahead: 10, running: true, patience: .milliseconds(450), at: at(1250)))
    }

    @Test func groupTimesFollowASlowerGroupAtOnceAndAFasterOneSlowly() {
        var forecast = timed(.milliseconds(100))
        forecast.groupStarted(at: at(1000))
        forecast.groupEnded(at: at(1300))
        #expect(forecast.groupTime == .milliseconds(300), "a slower group counts at once")
        forecast.groupStarted(at: at(2000))
        forecast.groupEnded(at: at(2100))
        #expect(forecast.groupTime == .milliseconds(275), "an eighth of the way to a faster one")
        for start in stride(from: 3000, to: 12000, by: 100) {
            forecast.groupStarted(at: at(start))
            forecast.groupEnded(at: at(start + 10))
        }
        let time = forecast.groupTime!
        #expect(time < .milliseconds(11) && time >= .milliseconds(10), "steady groups are followed: \(time)")
    }

    @Test func aStoreThatAnswersNothingForACallsPatienceRefusesItOnArrivalButLetsOneProbeIn() {
        var forecast = timed(.milliseconds(10))
        forecast.groupStarted(at: at(1000))
        // 500 ms without an answer: a call that may wait 400 ms is refused, even first in line.
        #expect(forecast.isStalled(patience: .milliseconds(400), at: at(1500)))
        #expect(!forecast.admits(ahead: 0, running: true, patience: .milliseconds(400), at: at(1500)))
        #expect(forecast.limit(patience: .milliseconds(400), at: at(1500)) == 0)
        // One that may wait longer than the stall has lasted is judged on the groups.
        #expect(forecast.admits(ahead: 0, running: true, patience: .seconds(2), at: at(1500)))
        // Everything waiting expired: the line is empty, the stall goes on; the next call alone
        // probes, and those arriving behind it are refused.
        forecast.stopped(at: at(1600))
        #expect(forecast.admits(ahead: 0, running: false, patience: .milliseconds(400), at: at(1700)))
        forecast.groupStarted(at: at(1700))
        #expect(!forecast.admits(ahead: 0, running: true, patience: .milliseconds(400), at: at(1710)))
        // The probe's group is answered: the store moves again.
        forecast.groupEnded(at: at(1750))
        #expect(!forecast.isStalled(patience: .milliseconds(400), at: at(1760)))
        #expect(forecast.admits(ahead: 5, running: true, patience: .milliseconds(400), at: at(1760)))
    }

    @Test func aStallIsMeasuredFromTheLastAnswerNotFromTheLastGroupsStart() {
        var forecast = timed(.milliseconds(10))
        // Groups keep being answered: however long the line has been busy, no stall.
        for start in stride(from: 1000, to: 5000, by: 50) {
            forecast.groupStarted(at: at(start))
            forecast.groupEnded(at: at(start + 50))
        }
        forecast.groupStarted(at: at(5000))
        #expect(!forecast.isStalled(patience: .milliseconds(100), at: at(5050)))
        #expect(forecast.isStalled(patience: .milliseconds(100), at: at(5100)))
    }
}
