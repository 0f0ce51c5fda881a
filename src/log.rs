//! Minimal leveled logging to stderr with a UTC timestamp. Never given credentials: the Redis
//! target is logged through `RedisTarget`'s `Display`, which masks the password.

#[macro_export]
macro_rules! log {
    ($level:ident, $($arg:tt)*) => {
        eprintln!(
            "{} {} {}",
            humantime::format_rfc3339_millis(std::time::SystemTime::now()),
            $crate::log::label(stringify!($level)),
            format_args!($($arg)*)
        )
    };
}

pub fn label(level: &str) -> &'static str {
    match level {
        "error" => "ERROR",
        "warn" => "WARN ",
        _ => "INFO ",
    }
}
