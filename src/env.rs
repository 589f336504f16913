//! The environment, read the way OpenSSL reads its own variables (`ossl_safe_getenv`): not
//! at all in a process running with privileges its invoking user does not have.
//!
//! A setuid or setgid program, or one given file capabilities, is started by a user who
//! controls its environment but not its privileges. Were `SESSCACHE_URL`, `SESSCACHE_STATS`
//! or `SESSCACHE_LOG` honoured there, that user could have the library create segments as
//! the program's owner, append statistics lines to any file the program may write, or read
//! a password from a variable of their choosing. The kernel marks such a process (the
//! `AT_SECURE` auxiliary vector entry, which is also what glibc's `secure_getenv` checks),
//! and every variable read through this module is then absent: the library behaves as if
//! none was set. An application linked with the library still configures it through its
//! own code (`sesscache_open`), which the invoking user does not control.

use std::ffi::OsString;

/// Whether this process runs in secure-execution mode (setuid, setgid, file capabilities,
/// or an LSM that asks for it): `getauxval(AT_SECURE)`.
#[cfg(not(miri))]
pub fn privileged() -> bool {
    // SAFETY: getauxval reads the auxiliary vector the kernel gave the process; it has no
    // preconditions and returns 0 for an entry that is absent.
    unsafe { libc::getauxval(libc::AT_SECURE) != 0 }
}

/// Under Miri (`make sanitize`), which cannot call `getauxval`: the tests it runs are never
/// setuid.
#[cfg(miri)]
pub fn privileged() -> bool {
    false
}

/// The variable's value, or None if it is unset or the process is privileged.
pub fn var_os(name: &str) -> Option<OsString> {
    if privileged() {
        return None;
    }
    std::env::var_os(name)
}

/// The variable as text: None if unset (or the process is privileged), `Err` with the raw
/// value if it is not UTF-8.
pub fn var(name: &str) -> Option<Result<String, OsString>> {
    var_os(name).map(OsString::into_string)
}

/// Whether `name` is set but ignored because the process is privileged (for saying so).
pub fn ignored(name: &str) -> bool {
    privileged() && std::env::var_os(name).is_some_and(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ordinary_process_reads_its_environment() {
        // cargo test runs unprivileged (c-tests/privileged_check.sh covers the other case).
        assert!(!privileged());
        std::env::set_var("SESSCACHE_ENV_TEST", "x");
        assert_eq!(var("SESSCACHE_ENV_TEST"), Some(Ok("x".to_string())));
        assert!(!ignored("SESSCACHE_ENV_TEST"));
        std::env::remove_var("SESSCACHE_ENV_TEST");
        assert_eq!(var_os("SESSCACHE_ENV_TEST"), None);
    }
}
