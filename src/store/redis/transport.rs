//! The one way commands go to Redis: [`Transport`], a connection that sends packed commands
//! and reads their replies (the real one is `conn::Conn`; tests use a scripted fake,
//! [`fake`]), commands packed by hand ([`pack`]: the buffers that held session bytes are
//! wiped), and scripts run by [`eval`]: EVALSHA, and EVAL (which also caches the script)
//! when the server does not have it yet. The lookups, the writer's reports and the
//! ticket-key records all run their scripts through it.

use crate::secret::SecretBytes;
use redis::{ErrorKind, RedisResult, Value};
use std::time::Duration;

/// A connection commands are sent on.
pub(crate) trait Transport {
    /// Sends one packed command and reads its reply; each socket operation gives up after
    /// `budget`. A server's error reply is an `Err`.
    fn request(&mut self, packed: &[u8], budget: Duration) -> RedisResult<Value>;

    /// Sends `count` packed commands at once (a pipeline: one write, then the replies in
    /// order) and reads their replies; a server's error reply is a `Value::ServerError`
    /// among them, a network error fails them all. Each socket operation gives up after
    /// `budget`. None for a connection that routes one command at a time (a cluster's).
    fn request_many(
        &mut self,
        packed: &[u8],
        count: usize,
        budget: Duration,
    ) -> Option<RedisResult<Vec<Value>>>;

    /// False once the connection saw its socket close.
    fn is_open(&self) -> bool;
}

/// Runs the script `script`, whose SHA-1 is `sha`, with `keys_and_args` (the number of
/// keys, the keys, the arguments): EVALSHA, and on NOSCRIPT EVAL, which also caches it (so
/// the next call's EVALSHA finds it). `budget` is asked before each command (a lookup's
/// is what is left of its time; it may fail, when none is).
pub(crate) fn eval(
    t: &mut impl Transport,
    sha: &str,
    script: &str,
    keys_and_args: &[&[u8]],
    mut budget: impl FnMut() -> RedisResult<Duration>,
) -> RedisResult<Value> {
    let mut args: Vec<&[u8]> = Vec::with_capacity(2 + keys_and_args.len());
    args.push(b"EVALSHA");
    args.push(sha.as_bytes());
    args.extend_from_slice(keys_and_args);
    match t.request(pack(&args).as_slice(), budget()?) {
        Err(e) if e.kind() == ErrorKind::NoScriptError => {
            args[0] = b"EVAL";
            args[1] = script.as_bytes();
            t.request(pack(&args).as_slice(), budget()?)
        }
        other => other,
    }
}

/// A command in RESP (an array of bulk strings), in a buffer that is wiped when dropped.
pub(crate) fn pack(args: &[&[u8]]) -> SecretBytes {
    fn digits(n: usize) -> usize {
        n.checked_ilog10().map_or(1, |d| d as usize + 1)
    }
    let len = 1
        + digits(args.len())
        + 2
        + args
            .iter()
            .map(|a| 1 + digits(a.len()) + 2 + a.len() + 2)
            .sum::<usize>();
    let mut out = SecretBytes::zeroed(len);
    let buf = out.as_mut_slice();
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        buf[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len();
    };
    put(b"*");
    put(args.len().to_string().as_bytes());
    put(b"\r\n");
    for a in args {
        put(b"$");
        put(a.len().to_string().as_bytes());
        put(b"\r\n");
        put(a);
        put(b"\r\n");
    }
    debug_assert_eq!(at, len);
    out
}

/// A scripted [`Transport`] for tests: connections that answer from a shared script, in
/// order, and record what was sent on them.
#[cfg(test)]
pub(crate) mod fake {
    use super::Transport;
    use redis::{RedisError, RedisResult, Value};
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex, MutexGuard};
    use std::time::Duration;

    /// What the next call gets.
    pub(crate) enum Answer {
        /// A `request`'s reply (an error reply, or a network error: `Err`).
        One(RedisResult<Value>),
        /// A `request_many`'s replies; None: the connection does not pipeline.
        Many(Option<RedisResult<Vec<Value>>>),
    }

    /// A call as the fake saw it.
    #[derive(Clone, Debug, PartialEq, Eq)]
    pub(crate) struct Sent {
        /// Which connection (numbered from 1 as they are made).
        pub conn: u32,
        pub packed: Vec<u8>,
        /// None for `request`, the command count for `request_many`.
        pub count: Option<usize>,
    }

    #[derive(Default)]
    struct State {
        answers: VecDeque<Answer>,
        connects: VecDeque<RedisResult<()>>,
        sent: Vec<Sent>,
        made: u32,
        /// Connections made, and closed by their holder (dropped).
        dropped: Vec<u32>,
    }

    /// The script every connection of one test shares.
    #[derive(Clone, Default)]
    pub(crate) struct Script(Arc<Mutex<State>>);

    impl Script {
        fn state(&self) -> MutexGuard<'_, State> {
            self.0.lock().unwrap()
        }

        /// The next call's answer.
        pub fn answer(&self, a: Answer) -> &Script {
            self.state().answers.push_back(a);
            self
        }

        /// The next connect's outcome (a connect with none scripted succeeds).
        pub fn connect_result(&self, r: RedisResult<()>) -> &Script {
            self.state().connects.push_back(r);
            self
        }

        /// A connection, as `connect` makes it.
        pub fn connect(&self) -> RedisResult<FakeConn> {
            let mut st = self.state();
            st.connects.pop_front().unwrap_or(Ok(()))?;
            st.made += 1;
            Ok(FakeConn {
                script: self.clone(),
                id: st.made,
                open: true,
            })
        }

        /// What was sent so far, in order.
        pub fn sent(&self) -> Vec<Sent> {
            self.state().sent.clone()
        }

        /// How many connections were made.
        pub fn made(&self) -> u32 {
            self.state().made
        }

        /// The connections dropped so far.
        pub fn dropped(&self) -> Vec<u32> {
            self.state().dropped.clone()
        }

        /// Answers not used yet.
        pub fn left(&self) -> usize {
            self.state().answers.len()
        }

        fn next(&self, sent: Sent) -> Answer {
            let mut st = self.state();
            st.sent.push(sent);
            st.answers
                .pop_front()
                .expect("a call the script has no answer for")
        }
    }

    pub(crate) struct FakeConn {
        script: Script,
        pub id: u32,
        /// What `is_open` says.
        pub open: bool,
    }

    impl Drop for FakeConn {
        fn drop(&mut self) {
            if let Ok(mut st) = self.script.0.lock() {
                st.dropped.push(self.id);
            }
        }
    }

    impl Transport for FakeConn {
        fn request(&mut self, packed: &[u8], _budget: Duration) -> RedisResult<Value> {
            let sent = Sent {
                conn: self.id,
                packed: packed.to_vec(),
                count: None,
            };
            match self.script.next(sent) {
                Answer::One(r) => r,
                Answer::Many(_) => panic!("request answered with a pipeline's replies"),
            }
        }

        fn request_many(
            &mut self,
            packed: &[u8],
            count: usize,
            _budget: Duration,
        ) -> Option<RedisResult<Vec<Value>>> {
            let sent = Sent {
                conn: self.id,
                packed: packed.to_vec(),
                count: Some(count),
            };
            match self.script.next(sent) {
                Answer::Many(r) => r,
                Answer::One(_) => panic!("a pipeline answered with one reply"),
            }
        }

        fn is_open(&self) -> bool {
            self.open
        }
    }

    /// A server's error reply, as the crate makes it from the wire (`-CODE detail`).
    pub(crate) fn error_reply(line: &str) -> RedisError {
        server_error(line).extract_error().unwrap_err()
    }

    /// The same, as a reply among a pipeline's.
    pub(crate) fn server_error(line: &str) -> Value {
        redis::parse_redis_value(format!("-{line}\r\n").as_bytes()).unwrap()
    }

    /// A network error: the connection was reset.
    pub(crate) fn reset() -> RedisError {
        RedisError::from(std::io::Error::from(std::io::ErrorKind::ConnectionReset))
    }

    pub(crate) fn ok() -> Value {
        Value::Okay
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{error_reply, reset, Answer, Script};
    use super::*;

    #[test]
    fn packing() {
        assert_eq!(
            pack(&[b"SET", b"k", b""]).as_slice(),
            b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\n"
        );
        let long = vec![7u8; 1234];
        let p = pack(&[b"GET", &long, b"0123456789"]);
        let head = b"*3\r\n$3\r\nGET\r\n$1234\r\n";
        assert_eq!(&p.as_slice()[..head.len()], head);
        assert!(p.as_slice().ends_with(b"\r\n$10\r\n0123456789\r\n"));
        assert_eq!(
            p.len(),
            head.len() + 1234 + 2 + b"$10\r\n0123456789\r\n".len()
        );
    }

    fn evalsha() -> Vec<u8> {
        pack(&[b"EVALSHA", b"abc", b"1", b"k", b"x"])
            .as_slice()
            .to_vec()
    }

    fn eval_script() -> Vec<u8> {
        pack(&[b"EVAL", b"return 1", b"1", b"k", b"x"])
            .as_slice()
            .to_vec()
    }

    fn run(c: &mut super::fake::FakeConn) -> RedisResult<Value> {
        eval(c, "abc", "return 1", &[b"1", b"k", b"x"], || {
            Ok(Duration::from_secs(1))
        })
    }

    /// NOSCRIPT: the script is sent once with EVAL, which caches it; the next call uses
    /// EVALSHA again.
    #[test]
    fn noscript_falls_back_to_eval_once() {
        let script = Script::default();
        script
            .answer(Answer::One(Err(error_reply(
                "NOSCRIPT No matching script. Please use EVAL.",
            ))))
            .answer(Answer::One(Ok(Value::Int(1))))
            .answer(Answer::One(Ok(Value::Int(2))));
        let mut c = script.connect().unwrap();
        assert_eq!(run(&mut c).unwrap(), Value::Int(1));
        assert_eq!(run(&mut c).unwrap(), Value::Int(2));
        let sent: Vec<Vec<u8>> = script.sent().into_iter().map(|s| s.packed).collect();
        assert_eq!(sent, [evalsha(), eval_script(), evalsha()]);
    }

    /// Any other failure is the call's: no EVAL.
    #[test]
    fn other_errors_are_not_retried() {
        let script = Script::default();
        script
            .answer(Answer::One(Err(error_reply("OOM command not allowed"))))
            .answer(Answer::One(Err(reset())));
        let mut c = script.connect().unwrap();
        assert_eq!(run(&mut c).unwrap_err().code(), Some("OOM"));
        assert!(run(&mut c).unwrap_err().is_io_error());
        assert_eq!(script.sent().len(), 2);
        assert!(script.sent().iter().all(|s| s.packed == evalsha()));
    }

    /// The budget is asked before each command: none left, nothing more is sent.
    #[test]
    fn a_spent_budget_stops_the_fallback() {
        let script = Script::default();
        script.answer(Answer::One(Err(error_reply(
            "NOSCRIPT No matching script.",
        ))));
        let mut c = script.connect().unwrap();
        let mut asked = 0;
        let r = eval(&mut c, "abc", "return 1", &[b"1", b"k", b"x"], || {
            asked += 1;
            if asked == 1 {
                Ok(Duration::from_millis(5))
            } else {
                Err(super::super::conn::timed_out())
            }
        });
        assert!(r.unwrap_err().is_timeout());
        assert_eq!(script.sent().len(), 1);
    }
}
