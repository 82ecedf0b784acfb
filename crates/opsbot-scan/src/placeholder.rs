//! Placeholders that a regex of the global allowlist cannot tell from real values: strings
//! made mostly of alphabet, digit or keyboard runs (`12345678-ABCD-ABCD-…`,
//! `abcdef.1234567890abcdef`, `qwerty123456`). A real token that merely *starts* with `1234`
//! or `abcdef` is kept: what counts is the share of the whole value that is a run, which for
//! random text is small (about 3 pairs in 16 for hex, 1 in 20 for base62).

/// Values with fewer letters and digits than this are never judged (too little evidence).
const MIN_ALNUM: usize = 8;
/// Share of adjacent letter/digit pairs that must be steps of a run (in percent).
const RUN_SHARE_PERCENT: usize = 60;

const KEYBOARD_ROWS: [&[u8]; 4] = [b"1234567890", b"qwertyuiop", b"asdfghjkl", b"zxcvbnm"];

/// Whether `a` then `b` (lowercase ASCII letters or digits) is one step of a run: the same
/// character again, the next or previous letter or digit, `9` → `0`, or neighbours on a
/// keyboard row.
fn is_step(a: u8, b: u8) -> bool {
    if a == b || a.wrapping_add(1) == b || b.wrapping_add(1) == a {
        return true;
    }
    KEYBOARD_ROWS.iter().any(|row| {
        row.windows(2)
            .any(|w| (w[0] == a && w[1] == b) || (w[0] == b && w[1] == a))
    })
}

/// Whether `secret` is a placeholder made of runs (see the module documentation). Only the
/// ASCII letters and digits count; separators (`-`, `.`, `_`) are skipped.
pub fn is_run_placeholder(secret: &[u8]) -> bool {
    let mut prev: Option<u8> = None;
    let (mut pairs, mut steps, mut alnum) = (0usize, 0usize, 0usize);
    for &c in secret {
        if !c.is_ascii_alphanumeric() {
            continue;
        }
        let c = c.to_ascii_lowercase();
        alnum += 1;
        if let Some(p) = prev {
            pairs += 1;
            // A letter next to a digit is never a step (`a1` is not a run).
            if p.is_ascii_digit() == c.is_ascii_digit() && is_step(p, c) {
                steps += 1;
            }
        }
        prev = Some(c);
    }
    alnum >= MIN_ALNUM && steps * 100 >= pairs * RUN_SHARE_PERCENT
}

/// The longest typed run in `secret`, in steps: consecutive letters or digits each the next
/// or previous one, or a keyboard neighbour, of the one before (`abcdefg`, `1234567` and
/// `qwertyu` are 6). A repeated character is no step here (`AAAA` is common in base64 of
/// binary data); any other character ends a run. Random text seldom has long runs (6 steps
/// in a 32-character hex value: about 1 in 5,000), people typing a made-up value often do.
pub fn longest_run(secret: &[u8]) -> usize {
    let (mut best, mut cur) = (0usize, 0usize);
    let mut prev: Option<u8> = None;
    for &c in secret {
        if !c.is_ascii_alphanumeric() {
            prev = None;
            cur = 0;
            continue;
        }
        let c = c.to_ascii_lowercase();
        match prev {
            Some(p) if p != c && p.is_ascii_digit() == c.is_ascii_digit() && is_step(p, c) => {
                cur += 1;
                best = best.max(cur);
            }
            _ => cur = 0,
        }
        prev = Some(c);
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_run_counts_steps_and_breaks_on_other_characters() {
        assert_eq!(longest_run(b"Zq8vabcdefgX2"), 6);
        assert_eq!(longest_run(b"x1234567y"), 6);
        assert_eq!(longest_run(b"abc-def"), 2);
        assert_eq!(longest_run(b"a1b2c3d4"), 0);
        assert_eq!(longest_run(b"Q-ABCDEFGHIJKL-0"), 11);
        assert!(longest_run(b"Hq4zT8vLw2Rk9mXc") < 3);
        assert_eq!(longest_run(b"AAAAAAAAAAB3Nza"), 1);
    }

    #[test]
    fn sequences_and_keyboard_runs_are_placeholders() {
        for s in [
            "12345678-ABCD-ABCD-ABCD-1234567890AB",
            "abcdef.1234567890abcdef",
            "012345abcdef",
            "AIzaSyabcdefghijklmnopqrstuvwxyz1234567",
            "qwertyuiop123456",
            "aaaaaaaaaaaaaaaaaaaaaaaa",
            "0000-0000-0000-0000",
            "zyxwvutsrqponm",
        ] {
            assert!(is_run_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn real_tokens_with_a_sequence_prefix_are_kept() {
        for s in [
            // Random values that start like a placeholder.
            "1234f9Qz7LmX2bR8vK4nT6yW0cH3sJ5d",
            "abcdef9e1c27b84d05f3a6e9c1b7d2f4",
            "012345Zp8Rk2LmQ9vXc4Tn7Bw1Hy6Js3",
            "a1b2c3d4e5f6a7b8",
            "wJalrXUtnFEMI/K7MDENG/bPxRfiCYzQ2W3E4R5T",
            "ghp_k2L9qWx7Vb3Nm8Rt5Yz1Pd4Hs6Gf0Jc2Ka9E",
            // Too short to judge.
            "abc123",
        ] {
            assert!(!is_run_placeholder(s.as_bytes()), "{s}");
        }
    }

    #[test]
    fn random_hex_is_never_judged_a_run() {
        // A fixed linear congruential generator: 2,000 pseudo-random hex strings of 32.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let hex = b"0123456789abcdef";
        for _ in 0..2000 {
            let s: Vec<u8> = (0..32)
                .map(|_| {
                    x = x
                        .wrapping_mul(6_364_136_223_846_793_005)
                        .wrapping_add(1_442_695_040_888_963_407);
                    hex[(x >> 60) as usize]
                })
                .collect();
            assert!(!is_run_placeholder(&s), "{}", String::from_utf8_lossy(&s));
        }
    }
}
