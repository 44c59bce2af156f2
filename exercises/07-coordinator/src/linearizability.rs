//! A linearizability checker, after Wing and Gong (1993) with Lowe's
//! memoization (2017), the algorithm of Porcupine and Knossos.
//!
//! A history is a list of operations, each with the time its client called
//! it and the time the answer came back. It is *linearizable* if every
//! operation can be given one instant between its call and its return such
//! that, taken in the order of those instants, the operations are a correct
//! run of a sequential model (a register, a key-value map, a tree of
//! znodes). That is what "writes are linearizable" promises: the system
//! behaves as one copy that does one thing at a time, and never contradicts
//! real time.
//!
//! The search: at each step, any operation that was called before every
//! remaining operation's return may be the next to take effect. Try each
//! (depth first); keep the model state it leads to; back up when the model
//! says the recorded output is impossible. A configuration already seen
//! (the same set of operations done, the same model state) is not searched
//! twice, which is what makes the search practical.
//!
//! An operation whose answer never came (a timeout, a crash) may have taken
//! effect at any time after its call, or never: it is tried with any output,
//! and may be left out.

use std::collections::HashSet;
use std::hash::Hash;

/// A sequential specification: what one copy doing one thing at a time
/// would answer.
pub trait Model {
    /// The state of the one copy.
    type State: Clone + Eq + Hash;
    /// An operation's input (say, "write 3").
    type Input;
    /// An operation's output (say, "ok", or "read 3").
    type Output;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// The state after `input` is applied to `state`, if it could have
    /// answered `output`; `None` if it could not. With `output` `None` (the
    /// answer never came), any output is allowed.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Who called it (for messages only).
    pub client: u64,
    /// What was asked.
    pub input: I,
    /// When it was called.
    pub call: u64,
    /// The answer and when it came, or `None` if it never did.
    pub output: Option<(O, u64)>,
}

impl<I, O> Operation<I, O> {
    /// When the answer came; never, for one that has none.
    fn returned(&self) -> u64 {
        self.output.as_ref().map_or(u64::MAX, |&(_, at)| at)
    }
}

/// The verdict on a history that is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The most operations any order managed to linearize before it was
    /// stuck: the indexes, in that order. The operations after it are
    /// where to look.
    pub longest_prefix: Vec<usize>,
}

/// Checks `history` against `model`: `Ok` if it is linearizable.
pub fn check<M: Model>(
    model: &M,
    history: &[Operation<M::Input, M::Output>],
) -> Result<(), Violation> {
    let mut search = Search {
        model,
        history,
        seen: HashSet::new(),
        order: Vec::new(),
        longest: Vec::new(),
    };
    let done = Bits::new(history.len());
    if search.explore(&done, &model.init()) {
        Ok(())
    } else {
        Err(Violation {
            longest_prefix: search.longest,
        })
    }
}

/// A set of operation indexes.
#[derive(Clone, PartialEq, Eq, Hash)]
struct Bits(Vec<u64>);

impl Bits {
    fn new(len: usize) -> Self {
        Bits(vec![0; len.div_ceil(64)])
    }

    fn contains(&self, i: usize) -> bool {
        self.0[i / 64] & (1 << (i % 64)) != 0
    }

    fn with(&self, i: usize) -> Self {
        let mut bits = self.clone();
        bits.0[i / 64] |= 1 << (i % 64);
        bits
    }
}

struct Search<'a, M: Model> {
    model: &'a M,
    history: &'a [Operation<M::Input, M::Output>],
    seen: HashSet<(Bits, M::State)>,
    order: Vec<usize>,
    longest: Vec<usize>,
}

impl<M: Model> Search<'_, M> {
    /// Whether the operations not in `done` can be linearized from `state`.
    fn explore(&mut self, done: &Bits, state: &M::State) -> bool {
        todo!("exercise `explore`: Depth-first search. Done when every remaining operation is one that never returned. Skip a (done, state) pair seen before (memoization). Otherwise try as the next operation to take effect each remaining one called before the earliest return among the remaining ones: if the model accepts its output from `state`, push it on `self.order`, explore from the new state, and pop it; succeed if any branch does. Keep the longest `order` reached in `self.longest` for the report.")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A register holding a number, with reads, writes and compare-and-set.
    struct Register;

    #[derive(Debug, Clone, Copy)]
    enum Op {
        Read,
        Write(u32),
        Cas(u32, u32),
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Out {
        Value(u32),
        Ok,
        Failed,
    }

    impl Model for Register {
        type State = u32;
        type Input = Op;
        type Output = Out;

        fn init(&self) -> u32 {
            0
        }

        fn step(&self, &state: &u32, input: &Op, output: Option<&Out>) -> Option<u32> {
            let (next, answer) = match *input {
                Op::Read => (state, Out::Value(state)),
                Op::Write(v) => (v, Out::Ok),
                Op::Cas(from, to) if from == state => (to, Out::Ok),
                Op::Cas(..) => (state, Out::Failed),
            };
            output.is_none_or(|o| *o == answer).then_some(next)
        }
    }

    fn op(client: u64, input: Op, call: u64, output: Out, ret: u64) -> Operation<Op, Out> {
        Operation {
            client,
            input,
            call,
            output: Some((output, ret)),
        }
    }

    #[test]
    fn concurrent_operations_may_take_effect_in_either_order() {
        // The read overlaps the write, so it may see the old value or the new.
        for seen in [0, 1] {
            let history = [
                op(1, Op::Write(1), 0, Out::Ok, 10),
                op(2, Op::Read, 5, Out::Value(seen), 15),
            ];
            assert_eq!(check(&Register, &history), Ok(()), "read {seen}");
        }
    }

    #[test]
    fn a_read_after_a_write_returned_must_see_it() {
        let history = [
            op(1, Op::Write(1), 0, Out::Ok, 10),
            op(2, Op::Read, 11, Out::Value(0), 15),
        ];
        let violation = check(&Register, &history).unwrap_err();
        assert_eq!(violation.longest_prefix, vec![0]);
    }

    #[test]
    fn two_reads_may_not_disagree_on_the_order_of_writes() {
        // Writes of 1 and 2 overlap; one reader sees 1 then 2, the other 2
        // then 1, both after the writes: no single order explains both.
        let history = [
            op(1, Op::Write(1), 0, Out::Ok, 100),
            op(2, Op::Write(2), 0, Out::Ok, 100),
            op(3, Op::Read, 10, Out::Value(1), 20),
            op(3, Op::Read, 30, Out::Value(2), 40),
            op(4, Op::Read, 10, Out::Value(2), 20),
            op(4, Op::Read, 30, Out::Value(1), 40),
        ];
        assert!(check(&Register, &history).is_err());
    }

    #[test]
    fn an_operation_without_an_answer_may_have_happened_or_not() {
        let unanswered = Operation {
            client: 1,
            input: Op::Write(7),
            call: 0,
            output: None,
        };
        for seen in [0, 7] {
            let history = [
                unanswered.clone(),
                op(2, Op::Read, 50, Out::Value(seen), 60),
            ];
            assert_eq!(check(&Register, &history), Ok(()), "read {seen}");
        }
        // But not a value nobody wrote.
        let history = [unanswered, op(2, Op::Read, 50, Out::Value(8), 60)];
        assert!(check(&Register, &history).is_err());
    }

    #[test]
    fn compare_and_set_succeeds_for_exactly_one_of_two_racers() {
        let both_won = [
            op(1, Op::Cas(0, 1), 0, Out::Ok, 10),
            op(2, Op::Cas(0, 2), 0, Out::Ok, 10),
        ];
        assert!(check(&Register, &both_won).is_err());
        let one_won = [
            op(1, Op::Cas(0, 1), 0, Out::Ok, 10),
            op(2, Op::Cas(0, 2), 0, Out::Failed, 10),
            op(3, Op::Read, 20, Out::Value(1), 30),
        ];
        assert_eq!(check(&Register, &one_won), Ok(()));
    }

    #[test]
    fn a_long_history_of_sequential_operations_checks_quickly() {
        // 2,000 operations by 4 clients in lockstep: memoization keeps the
        // search linear in practice.
        let mut history = Vec::new();
        let mut value = 0;
        for round in 0..500u64 {
            let t = round * 10;
            value += 1;
            history.push(op(0, Op::Write(value), t, Out::Ok, t + 5));
            for client in 1..4 {
                history.push(op(client, Op::Read, t + 6, Out::Value(value), t + 9));
            }
        }
        assert_eq!(check(&Register, &history), Ok(()));
    }
}
