//! The keyword prefilter: every occurrence of every rule keyword (ASCII case-insensitive,
//! overlapping), which decides which rules run their regex and where.
//!
//! Two Aho-Corasick automata over the same keywords, each built on first use: a contiguous
//! NFA, quick to build, for the first [`DFA_AFTER_BYTES`] searched (a pre-commit hook's
//! whole input), then a DFA, quicker to search. The DFA is walked here rather than through
//! the library's overlapping iterator: a long input is cut into four slices whose
//! state chains are advanced together, one byte of each per step. One chain is a sequence
//! of dependent table loads (each transition needs the state before it), which leaves the
//! CPU idle while a load misses the cache; independent chains fill that time. Both
//! automata report exactly the library's overlapping matches (a test checks it).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use aho_corasick::automaton::{Automaton, StateID};
use aho_corasick::dfa::DFA;
use aho_corasick::{AhoCorasick, AhoCorasickKind, Anchored, MatchKind};

/// Bytes searched with the keyword NFA before the keyword DFA is built. The DFA searches
/// faster but takes ~15 ms to build over the whole catalogue's keywords, more than a
/// pre-commit hook's whole scan of a small change; the contiguous NFA builds in a fraction
/// of that. Both report the same matches.
pub const DFA_AFTER_BYTES: usize = 2 * 1024 * 1024;

/// Independent DFA chains advanced together on a long input (`walk_dfa` is written out
/// for four).
const LANES: usize = 4;

/// Shortest slice one lane walks: below it, one chain walks the whole input (the lanes'
/// overlaps would cost more than they save).
const MIN_LANE: usize = 256;

/// Every rule keyword, with the automata that find them.
#[derive(Debug)]
pub struct Keywords {
    patterns: Vec<String>,
    max_len: usize,
    nfa: OnceLock<Option<AhoCorasick>>,
    dfa: OnceLock<Option<DFA>>,
    searched: AtomicUsize,
}

impl Keywords {
    /// Keywords are matched ASCII case-insensitively; empty ones are never reported.
    pub fn new(patterns: Vec<String>) -> Self {
        let max_len = patterns.iter().map(String::len).max().unwrap_or(0);
        Keywords {
            patterns,
            max_len,
            nfa: OnceLock::new(),
            dfa: OnceLock::new(),
            searched: AtomicUsize::new(0),
        }
    }

    /// Length of the longest keyword in bytes.
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Calls `each(start, pattern)` for every occurrence of a keyword in `hay`, overlapping
    /// ones included, in no particular order.
    pub fn for_each(&self, hay: &[u8], mut each: impl FnMut(usize, usize)) {
        if self.patterns.is_empty() || hay.is_empty() {
            return;
        }
        if let Some(dfa) = self.dfa(hay.len()) {
            walk_dfa(dfa, hay, &mut each);
        } else if let Some(nfa) = self.nfa() {
            for m in nfa.find_overlapping_iter(hay) {
                if !m.is_empty() {
                    each(m.start(), m.pattern().as_usize());
                }
            }
        }
    }

    /// The DFA once [`DFA_AFTER_BYTES`] have been searched (built then, once).
    fn dfa(&self, len: usize) -> Option<&DFA> {
        if let Some(dfa) = self.dfa.get() {
            return dfa.as_ref();
        }
        let searched = self
            .searched
            .fetch_add(len, Ordering::Relaxed)
            .saturating_add(len);
        if searched < DFA_AFTER_BYTES {
            return None;
        }
        self.dfa
            .get_or_init(|| {
                DFA::builder()
                    .ascii_case_insensitive(true)
                    .match_kind(MatchKind::Standard)
                    // `walk_dfa` does not use one; without it, start states are not
                    // "special" and the walk branches only on matches.
                    .prefilter(false)
                    .build(&self.patterns)
                    .map_err(|e| tracing::warn!("keyword DFA not built, the NFA searches: {e}"))
                    .ok()
            })
            .as_ref()
    }

    fn nfa(&self) -> Option<&AhoCorasick> {
        self.nfa
            .get_or_init(|| {
                [
                    AhoCorasickKind::ContiguousNFA,
                    AhoCorasickKind::NoncontiguousNFA,
                ]
                .into_iter()
                .find_map(|kind| {
                    AhoCorasick::builder()
                        .ascii_case_insensitive(true)
                        .match_kind(MatchKind::Standard)
                        .kind(Some(kind))
                        .build(&self.patterns)
                        .ok()
                })
            })
            .as_ref()
    }
}

/// Every overlapping match of `dfa` in `hay`. Lane `k` walks `hay[k·part ..]` up to the next
/// lane's start plus the longest keyword (so a match that starts in its slice ends in it)
/// and reports only the matches that start in its slice.
fn walk_dfa(dfa: &DFA, hay: &[u8], each: &mut impl FnMut(usize, usize)) {
    let Ok(start) = dfa.start_state(Anchored::No) else {
        return;
    };
    let overlap = dfa.max_pattern_len().saturating_sub(1);
    let part = hay.len() / LANES;
    if part < MIN_LANE.max(4 * overlap) {
        walk_lane(dfa, start, hay, 0, hay.len(), usize::MAX, each);
        return;
    }
    // Lane k walks [k·part, hi_k) and reports matches starting before (k+1)·part.
    let hi = |k: usize| {
        if k + 1 == LANES {
            hay.len()
        } else {
            (k + 1) * part + overlap
        }
    };
    let owned = |k: usize| {
        if k + 1 == LANES {
            usize::MAX
        } else {
            (k + 1) * part
        }
    };
    // All lanes are at least `part` long: they advance together for `part` steps, with
    // their states in registers, then each finishes alone.
    let (l0, rest) = hay.split_at(part);
    let (l1, rest) = rest.split_at(part);
    let (l2, rest) = rest.split_at(part);
    let l3 = &rest[..part];
    let (mut s0, mut s1, mut s2, mut s3) = (start, start, start, start);
    for (i, (((&b0, &b1), &b2), &b3)) in l0.iter().zip(l1).zip(l2).zip(l3).enumerate() {
        s0 = dfa.next_state(Anchored::No, s0, b0);
        s1 = dfa.next_state(Anchored::No, s1, b1);
        s2 = dfa.next_state(Anchored::No, s2, b2);
        s3 = dfa.next_state(Anchored::No, s3, b3);
        if dfa.is_special(s0) | dfa.is_special(s1) | dfa.is_special(s2) | dfa.is_special(s3) {
            for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
                if dfa.is_special(s) {
                    report(dfa, s, k * part + i + 1, owned(k), each);
                }
            }
        }
    }
    for (k, s) in [s0, s1, s2, s3].into_iter().enumerate() {
        walk_lane(dfa, s, hay, k * part + part, hi(k), owned(k), each);
    }
}

fn walk_lane(
    dfa: &DFA,
    start: StateID,
    hay: &[u8],
    from: usize,
    to: usize,
    owned: usize,
    each: &mut impl FnMut(usize, usize),
) {
    let mut s = start;
    for (pos, &byte) in hay.iter().enumerate().take(to).skip(from) {
        s = dfa.next_state(Anchored::No, s, byte);
        if dfa.is_special(s) {
            report(dfa, s, pos + 1, owned, each);
        }
    }
}

/// Reports the keywords that end at `end` in state `sid` and start before `owned`.
#[inline(always)]
fn report(dfa: &DFA, sid: StateID, end: usize, owned: usize, each: &mut impl FnMut(usize, usize)) {
    if !dfa.is_match(sid) {
        return;
    }
    for i in 0..dfa.match_len(sid) {
        let pid = dfa.match_pattern(sid, i);
        let len = dfa.pattern_len(pid);
        let start = end - len;
        if len > 0 && start < owned {
            each(start, pid.as_usize());
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// What the library's overlapping iterator reports, sorted.
    fn library(patterns: &[String], hay: &[u8]) -> Vec<(usize, usize)> {
        let ac = AhoCorasick::builder()
            .ascii_case_insensitive(true)
            .match_kind(MatchKind::Standard)
            .kind(Some(AhoCorasickKind::DFA))
            .build(patterns)
            .unwrap();
        let mut v: Vec<_> = ac
            .find_overlapping_iter(hay)
            .filter(|m| !m.is_empty())
            .map(|m| (m.start(), m.pattern().as_usize()))
            .collect();
        v.sort_unstable();
        v
    }

    fn ours(kw: &Keywords, hay: &[u8]) -> Vec<(usize, usize)> {
        let mut v = Vec::new();
        kw.for_each(hay, |s, p| v.push((s, p)));
        v.sort_unstable();
        v
    }

    /// A deterministic pseudo-random haystack over a small alphabet, so that keywords
    /// occur often, at lane boundaries too.
    fn haystack(len: usize, seed: u64) -> Vec<u8> {
        let alphabet = b"aAbBkKeEyY_-=:tToOnN \n";
        let mut x = seed;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                alphabet[(x % alphabet.len() as u64) as usize]
            })
            .collect()
    }

    #[test]
    fn nfa_and_lanes_of_the_dfa_report_what_the_library_does() {
        let patterns: Vec<String> = [
            "key", "api_key", "token", "to", "ab", "a", "bKe", "=:", "ntoken",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for (len, seed) in [
            (0, 1),
            (1, 2),
            (100, 3),
            (17_000, 4),
            (70_001, 5),
            (300_000, 6),
        ] {
            let hay = haystack(len, seed);
            let want = library(&patterns, &hay);
            // A fresh set searches with its NFA until DFA_AFTER_BYTES have been searched.
            let kw = Keywords::new(patterns.clone());
            assert_eq!(ours(&kw, &hay), want, "NFA, len {len}");
            kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
            assert_eq!(ours(&kw, &hay), want, "DFA, len {len}");
            assert_eq!(kw.dfa.get().is_some_and(Option::is_some), len > 0);
        }
    }

    #[test]
    fn a_keyword_straddling_every_lane_boundary_is_reported_once() {
        let patterns = vec!["secretkey".to_owned(), "key".to_owned()];
        let kw = Keywords::new(patterns.clone());
        kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
        let mut hay = vec![b'.'; 64 * 1024];
        let part = hay.len() / LANES;
        for k in 1..LANES {
            // Starts 3 bytes before lane k's slice: reported by lane k-1 only.
            hay[k * part - 3..k * part + 6].copy_from_slice(b"SecretKey");
        }
        let got = ours(&kw, &hay);
        assert_eq!(got, library(&patterns, &hay));
        assert_eq!(got.len(), 2 * (LANES - 1));
    }

    #[test]
    fn no_keywords_and_empty_keywords_report_nothing() {
        let hay = haystack(10_000, 9);
        assert!(ours(&Keywords::new(Vec::new()), &hay).is_empty());
        let kw = Keywords::new(vec![String::new(), "tok".to_owned()]);
        kw.searched.store(DFA_AFTER_BYTES, Ordering::Relaxed);
        assert!(ours(&kw, &hay).iter().all(|&(_, p)| p == 1));
    }
}
