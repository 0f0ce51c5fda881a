//! Fault injection for tests of the panic policy; compiled into debug builds only.
//!
//! With `REDIS_PROXY_FAULT_INJECTION=1` in the environment of a debug build, the command
//! `__REDIS_PROXY_PANIC__` panics inside a connection's handling, so a test can check what a
//! bug does to the process (it aborts: see the policy in `main.rs`).

#[cfg(debug_assertions)]
pub fn maybe_panic(args: &crate::resp::request::Args) {
    use std::sync::OnceLock;
    static ON: OnceLock<bool> = OnceLock::new();
    if *ON.get_or_init(|| std::env::var_os("REDIS_PROXY_FAULT_INJECTION").is_some_and(|v| v == "1"))
        && args.get(0) == b"__REDIS_PROXY_PANIC__"
    {
        panic!("fault injection: __REDIS_PROXY_PANIC__");
    }
}
