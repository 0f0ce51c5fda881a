//! Redis's glob matching (`stringmatchlen` in its util.c), which decides which patterns a
//! channel matches: `*`, `?`, `[...]` with `^` and ranges, and `\` escapes.

/// Whether `string` matches `pattern` as Redis matches a channel against a PSUBSCRIBE pattern.
pub fn matches(pattern: &[u8], string: &[u8]) -> bool {
    let mut skip_longer = false;
    match_impl(pattern, string, &mut skip_longer)
}

/// The byte at `i`, or 0 past the end (Redis reads the string's terminating NUL there).
fn at(s: &[u8], i: usize) -> u8 {
    s.get(i).copied().unwrap_or(0)
}

fn match_impl(pattern: &[u8], string: &[u8], skip_longer: &mut bool) -> bool {
    let (mut p, mut s) = (0usize, 0usize);
    while p < pattern.len() && s < string.len() {
        match pattern[p] {
            b'*' => {
                while p + 1 < pattern.len() && pattern[p + 1] == b'*' {
                    p += 1;
                }
                if p + 1 == pattern.len() {
                    return true;
                }
                while s < string.len() {
                    if match_impl(&pattern[p + 1..], &string[s..], skip_longer) {
                        return true;
                    }
                    if *skip_longer {
                        return false;
                    }
                    s += 1;
                }
                // No later position can match either: stop the callers' loops too.
                *skip_longer = true;
                return false;
            }
            b'?' => s += 1,
            b'[' => {
                p += 1;
                let not = at(pattern, p) == b'^';
                if not {
                    p += 1;
                }
                let c = string[s] as i8 as i32;
                let mut hit = false;
                loop {
                    if at(pattern, p) == b'\\' && pattern.len() - p >= 2 {
                        p += 1;
                        if pattern[p] == string[s] {
                            hit = true;
                        }
                    } else if at(pattern, p) == b']' {
                        break;
                    } else if p >= pattern.len() {
                        p -= 1; // an unterminated class: the loop's end steps past it
                        break;
                    } else if pattern.len() - p >= 3 && pattern[p + 1] == b'-' {
                        let (mut lo, mut hi) =
                            (pattern[p] as i8 as i32, pattern[p + 2] as i8 as i32);
                        if lo > hi {
                            std::mem::swap(&mut lo, &mut hi);
                        }
                        p += 2;
                        if c >= lo && c <= hi {
                            hit = true;
                        }
                    } else if pattern[p] == string[s] {
                        hit = true;
                    }
                    p += 1;
                }
                if not {
                    hit = !hit;
                }
                if !hit {
                    return false;
                }
                s += 1;
            }
            b => {
                let mut b = b;
                if b == b'\\' && pattern.len() - p >= 2 {
                    p += 1;
                    b = pattern[p];
                }
                if b != string[s] {
                    return false;
                }
                s += 1;
            }
        }
        p += 1;
        if s == string.len() {
            while at(pattern, p) == b'*' {
                p += 1;
            }
            break;
        }
    }
    p >= pattern.len() && s == string.len()
}

#[cfg(test)]
mod tests {
    use super::matches;

    #[test]
    fn globs_as_redis() {
        let yes: &[(&str, &str)] = &[
            ("*", "anything"),
            ("news.*", "news.art"),
            ("h?llo", "hello"),
            ("h[ae]llo", "hallo"),
            ("h[^e]llo", "hallo"),
            ("h[a-b]llo", "hbllo"),
            ("h[b-a]llo", "hallo"),
            ("__keyspace@0__:*", "__keyspace@0__:foo"),
            ("a\\*b", "a*b"),
            ("*a*", "bab"),
            ("a**", "a"),
            ("ab[c", "abc"),
        ];
        for (p, s) in yes {
            assert!(matches(p.as_bytes(), s.as_bytes()), "{p} ~ {s}");
        }
        let no: &[(&str, &str)] = &[
            ("news.*", "news"),
            ("h?llo", "hllo"),
            ("h[^e]llo", "hello"),
            ("h[a-b]llo", "hcllo"),
            ("a\\*b", "axb"),
            ("", "a"),
            ("a", ""),
            ("*a", "bbb"),
            ("ab[", "abc"),
        ];
        for (p, s) in no {
            assert!(!matches(p.as_bytes(), s.as_bytes()), "{p} !~ {s}");
        }
    }
}
