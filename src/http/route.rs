//! From a request target to the Redis key it names: `/<key>` or `/get?key=<key>`,
//! percent-decoded, so any byte may appear in a key.

/// Decodes the key named by `target` into `key` (cleared first); the error is the 400's body.
///
/// - `/get?key=<key>`: the `key` query parameter (the first one), decoded as a form value
///   (`+` is a space).
/// - `/<key>`: the whole path after the first `/` (`+` is a `+`, `/` is part of the key);
///   a query string after it is ignored, so a key holding `?` must spell it `%3F`.
pub fn key_of(target: &[u8], key: &mut Vec<u8>) -> Result<(), &'static str> {
    key.clear();
    let Some(rest) = target.strip_prefix(b"/") else {
        return Err("request target must be a path: /<key> or /get?key=<key>");
    };
    let (path, query) = match rest.iter().position(|&b| b == b'?') {
        Some(i) => (&rest[..i], Some(&rest[i + 1..])),
        None => (rest, None),
    };
    if path == b"get" {
        let value = query
            .into_iter()
            .flat_map(|q| q.split(|&b| b == b'&'))
            .find_map(|pair| pair.strip_prefix(b"key="))
            .ok_or("missing key parameter: /get?key=<key>")?;
        return decode(value, true, key);
    }
    if path.is_empty() {
        return Err("missing key: /<key> or /get?key=<key>");
    }
    decode(path, false, key)
}

/// Percent-decoding (RFC 3986); `form`: `+` stands for a space, as in a form's query.
fn decode(s: &[u8], form: bool, out: &mut Vec<u8>) -> Result<(), &'static str> {
    out.reserve(s.len());
    let mut i = 0;
    while i < s.len() {
        match s[i] {
            b'%' => {
                let hex = |j: usize| s.get(j).and_then(|&c| (c as char).to_digit(16));
                let (Some(hi), Some(lo)) = (hex(i + 1), hex(i + 2)) else {
                    return Err("malformed percent-encoding in the key");
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' if form => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(target: &str) -> Result<Vec<u8>, &'static str> {
        let mut k = Vec::new();
        key_of(target.as_bytes(), &mut k).map(|_| k)
    }

    #[test]
    fn path_form() {
        assert_eq!(key("/user:1").unwrap(), b"user:1");
        assert_eq!(key("/a%20b+c").unwrap(), b"a b+c");
        assert_eq!(key("/%00%ff%0D%0a").unwrap(), b"\0\xff\r\n");
        assert_eq!(key("/a/b?cache=bust").unwrap(), b"a/b");
        assert_eq!(key("/%3Fq").unwrap(), b"?q");
        assert_eq!(key("/get%3Fkey=x").unwrap(), b"get?key=x");
    }

    #[test]
    fn query_form() {
        assert_eq!(key("/get?key=a+b%26c").unwrap(), b"a b&c");
        assert_eq!(key("/get?x=1&key=k&key=other").unwrap(), b"k");
        assert_eq!(key("/get?key=").unwrap(), b"");
        assert_eq!(key("/get?key=get").unwrap(), b"get");
    }

    #[test]
    fn rejections() {
        assert!(key("/").is_err());
        assert!(key("/get").is_err());
        assert!(key("/get?k=1").is_err());
        assert!(key("http://h/k").is_err());
        assert!(key("*").is_err());
        assert!(key("/a%2").is_err());
        assert!(key("/a%zz").is_err());
        assert!(key("/get?key=%g0").is_err());
    }
}
