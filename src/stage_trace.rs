//! Timestamps of the stages a message passes through on a shard (feature
//! `stage-trace`), to split one side's share of a round trip into its
//! parts: `cargo bench --bench baseline --features stage-trace --
//! profile-stages` (docs/performance.md §4).
//!
//! Without the feature, [`mark`] is empty and nothing is kept. With it,
//! every mark costs one clock read (~25 ns) and 24 bytes in a buffer of the
//! calling thread, at most [`CAP`] marks per thread (later ones are
//! dropped and counted). A thread hands its buffer to a process-wide list
//! when it exits (shard threads exit when their node shuts down), where
//! `take` collects it.

use std::time::Duration;

/// A point on the path of a message through a shard (ring path).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum Stage {
    /// The driver is about to call `io_uring_enter`.
    Enter,
    /// `io_uring_enter` returned.
    Entered,
    /// A link's reader took a receive completion carrying bytes.
    Received,
    /// The link decrypted what the buffer completed.
    Opened,
    /// The frames went through the node's proxy (work queued).
    Handled,
    /// An engine's `on_message` is about to run.
    Delivered,
    /// A send from an engine was queued on its proxy.
    Queued,
    /// A link's writer woke to fill records.
    WriterRuns,
    /// The writer filled (and sealed) its records.
    Sealed,
    /// The records' send was pushed to the ring.
    SendPushed,
}

/// Where [`Stage::Delivered`] is in [`PATH`]: a receive seen before it
/// overtakes the passage being read.
const DELIVERED: usize = 5;
const _: () = assert!(matches!(PATH[DELIVERED], Stage::Delivered));

/// One side's path through a shard in a ping-pong, from the enter that
/// runs the receive to the enter that submits the answer.
pub const PATH: [Stage; 12] = [
    Stage::Enter,
    Stage::Entered,
    Stage::Received,
    Stage::Opened,
    Stage::Handled,
    Stage::Delivered,
    Stage::Queued,
    Stage::WriterRuns,
    Stage::Sealed,
    Stage::SendPushed,
    Stage::Enter,
    Stage::Entered,
];

/// The passages of messages along [`PATH`] in one thread's marks: for each
/// receive, the last enter before it and the first marks of the rest of the
/// path after it, in order (marks of other work in between are skipped). A
/// receive that another receive follows before its message reached an
/// engine, or whose path the trace does not complete, gives no passage.
pub fn passages(marks: &[(Stage, Duration)]) -> Vec<[Duration; PATH.len()]> {
    let mut out = Vec::new();
    let (mut enter, mut last) = (None, None);
    let mut i = 0;
    while i < marks.len() {
        let (stage, at) = marks[i];
        i += 1;
        match stage {
            Stage::Enter => enter = Some(at),
            Stage::Entered => last = enter.map(|e| (e, at)),
            Stage::Received => {
                let Some((e, d)) = last else { continue };
                let mut row = [Duration::ZERO; PATH.len()];
                (row[0], row[1], row[2]) = (e, d, at);
                let mut k = 3;
                while i < marks.len() && k < PATH.len() {
                    let (s, t) = marks[i];
                    if s == Stage::Received && k <= DELIVERED {
                        break; // this one is handled on the next turn
                    }
                    if s == PATH[k] {
                        row[k] = t;
                        k += 1;
                    }
                    i += 1;
                }
                if k == PATH.len() {
                    out.push(row);
                    // The enter that submitted the answer may also have run
                    // the next receive.
                    last = Some((row[PATH.len() - 2], row[PATH.len() - 1]));
                }
            }
            _ => {}
        }
    }
    out
}

/// Marks kept per thread at most.
pub const CAP: usize = 1 << 20;

/// The marks of one thread, in order.
#[derive(Debug, Default)]
pub struct ThreadTrace {
    /// The thread's name (shards: `shardwire-<shard>-<glommio executor id>`).
    pub thread: String,
    /// Each stage with its time since the first mark of the process.
    pub marks: Vec<(Stage, Duration)>,
    /// Marks dropped because the buffer was full.
    pub dropped: u64,
}

/// Records that the calling thread reached `stage` now.
#[inline(always)]
pub fn mark(stage: Stage) {
    #[cfg(feature = "stage-trace")]
    imp::mark(stage);
    #[cfg(not(feature = "stage-trace"))]
    let _ = stage;
}

/// The traces of every thread that has exited since the last call.
#[cfg(feature = "stage-trace")]
pub fn take() -> Vec<ThreadTrace> {
    std::mem::take(&mut *imp::DONE.lock().unwrap_or_else(|e| e.into_inner()))
}

#[cfg(feature = "stage-trace")]
mod imp {
    use super::{CAP, Stage, ThreadTrace};
    use std::cell::RefCell;
    use std::sync::{LazyLock, Mutex};
    use std::time::Instant;

    pub(super) static DONE: Mutex<Vec<ThreadTrace>> = Mutex::new(Vec::new());
    static BASE: LazyLock<Instant> = LazyLock::new(Instant::now);

    struct Local(ThreadTrace);

    impl Drop for Local {
        fn drop(&mut self) {
            let t = std::mem::take(&mut self.0);
            if !t.marks.is_empty() || t.dropped > 0 {
                DONE.lock().unwrap_or_else(|e| e.into_inner()).push(t);
            }
        }
    }

    thread_local! {
        static LOCAL: RefCell<Local> = RefCell::new(Local(ThreadTrace {
            thread: std::thread::current().name().unwrap_or("?").to_string(),
            marks: Vec::new(),
            dropped: 0,
        }));
    }

    pub(super) fn mark(stage: Stage) {
        let at = Instant::now().saturating_duration_since(*BASE);
        // During the thread's own teardown the buffer may be gone: drop the mark.
        let _ = LOCAL.try_with(|l| {
            let t = &mut l.borrow_mut().0;
            if t.marks.len() < CAP {
                t.marks.push((stage, at));
            } else {
                t.dropped += 1;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(marks: &[(Stage, u64)]) -> Vec<(Stage, Duration)> {
        marks.iter().map(|&(s, us)| (s, Duration::from_micros(us))).collect()
    }

    #[test]
    fn a_passage_runs_from_the_enter_before_the_receive_to_the_enter_after_the_send() {
        use Stage::*;
        let marks = at(&[
            (Enter, 1),
            (Entered, 2),
            (Enter, 10),
            (Entered, 12),
            (Received, 13),
            (Opened, 14),
            (Enter, 15), // a safety-net enter in between is skipped
            (Entered, 16),
            (Handled, 17),
            (Delivered, 18),
            (Queued, 19),
            (WriterRuns, 20),
            (Sealed, 21),
            (SendPushed, 22),
            (Enter, 23),
            (Entered, 30),
            // The next message: its receive ran in the same enter.
            (Received, 31),
            (Opened, 32),
            (Handled, 33),
            (Delivered, 34),
            (Queued, 35),
            (WriterRuns, 36),
            (Sealed, 37),
            (SendPushed, 38),
            (Enter, 39),
            (Entered, 40),
        ]);
        let p = passages(&marks);
        let us = |row: &[Duration; 12]| row.iter().map(|d| d.as_micros() as u64).collect::<Vec<_>>();
        assert_eq!(p.len(), 2);
        assert_eq!(us(&p[0]), [10, 12, 13, 14, 17, 18, 19, 20, 21, 22, 23, 30]);
        assert_eq!(us(&p[1]), [23, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40]);
    }

    #[test]
    fn an_overtaken_or_unfinished_path_gives_no_passage() {
        use Stage::*;
        // No enter before the first receive; the second is overtaken by a
        // third before delivery; the third completes; the fourth's trace
        // ends before its send.
        let marks = at(&[
            (Received, 1),
            (Opened, 2),
            (Enter, 3),
            (Entered, 4),
            (Received, 5),
            (Opened, 6),
            (Received, 7),
            (Opened, 8),
            (Handled, 9),
            (Delivered, 10),
            (Queued, 11),
            (WriterRuns, 12),
            (Sealed, 13),
            (SendPushed, 14),
            (Enter, 15),
            (Entered, 16),
            (Received, 17),
            (Opened, 18),
            (Handled, 19),
        ]);
        let p = passages(&marks);
        assert_eq!(p.len(), 1);
        assert_eq!(p[0][1], Duration::from_micros(4));
        assert_eq!(p[0][2], Duration::from_micros(7));
        assert_eq!(p[0][11], Duration::from_micros(16));
    }

    #[cfg(feature = "stage-trace")]
    #[test]
    fn a_thread_hands_its_marks_over_in_order_when_it_exits() {
        std::thread::Builder::new()
            .name("stage-trace-test".into())
            .spawn(|| {
                mark(Stage::Received);
                mark(Stage::Opened);
            })
            .unwrap()
            .join()
            .unwrap();
        let mine: Vec<_> = take().into_iter().filter(|t| t.thread == "stage-trace-test").collect();
        assert_eq!(mine.len(), 1);
        let stages: Vec<_> = mine[0].marks.iter().map(|m| m.0).collect();
        assert_eq!(stages, [Stage::Received, Stage::Opened]);
        assert!(mine[0].marks[0].1 <= mine[0].marks[1].1);
    }
}
