//! Rule regexes: checked at load, compiled on first use, searched with caches the scanner
//! owns.
//!
//! A compiled regex needs a mutable *cache* to search (the lazy DFA's states, the PikeVM's
//! threads). The `regex` crate keeps one per regex and thread for the life of the regex, so
//! with ~900 rules a keyword-dense input ends up holding a cache for nearly every rule on
//! every thread (35 MB measured). Here each scanning thread keeps its caches in one store
//! while all of them together hold less than [`CACHE_BUDGET`] bytes: past it, the thread
//! drops a random choice of its caches, rebuilt when their rule wakes again. Matches are
//! the same; only memory is bounded (and keyword-dense input pays in time for it).

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use regex_automata::meta::{Cache, Regex};
use regex_automata::util::captures::Captures;
use regex_automata::util::iter::Searcher;
use regex_automata::util::syntax;
use regex_automata::{Input, MatchKind, Span};

/// Size limit for one compiled rule regex (bytes of its NFA).
const REGEX_SIZE_LIMIT: usize = 4 * 1024 * 1024;
/// Lazy-DFA cache capacity of one regex (a cache that fills is cleared and reused).
const REGEX_DFA_CACHE: usize = 256 * 1024;
/// Bytes of regex caches all scanning threads keep together. Past this, the thread that
/// grew a cache drops a random choice of its caches until half of it is held (so that it
/// does not drop caches on every search). With 1,356 rules, a file where every rule's
/// keyword meets a match held 110 MB at 20 MiB; at 4 MiB it holds 94 MB, and only such
/// keyword-dense input is slower for it (the compiled rules themselves are ~30 MB).
/// Counted as `regex-automata` reports a cache's size (`Cache::memory_usage`): the heap
/// behind a searched cache is about 1.5 times that (up to 4.5 times for a small one, measured
/// with a counting allocator on 300 rules), so the stores hold about 6 MiB at most.
pub const CACHE_BUDGET: usize = 4 * 1024 * 1024;

/// Unique id of every [`LazyRegex`] made in this process: the key of its cache.
static NEXT_ID: AtomicUsize = AtomicUsize::new(0);

/// A regex whose syntax was checked at load and which is compiled on first use.
#[derive(Debug)]
pub struct LazyRegex {
    source: String,
    id: usize,
    compiled: OnceLock<Option<Regex>>,
}

impl LazyRegex {
    /// Checks the syntax now (a parse to the syntax tree: cheap); compiles later.
    /// Returns the regex and its number of capture groups.
    pub fn parse(source: &str) -> Result<(Self, usize), String> {
        let ast = regex_syntax::ast::parse::Parser::new()
            .parse(source)
            .map_err(|e| format!("regex does not parse: {}", one_line(&e.to_string())))?;
        Ok((Self::trusted(source), count_captures(&ast)))
    }

    /// A regex from the embedded rules, whose syntax the crate's tests check: nothing is
    /// parsed now (start-up of a pre-commit hook), a regex that does not compile is logged
    /// and skipped on first use like any other.
    pub(crate) fn trusted(source: &str) -> Self {
        LazyRegex {
            source: source.to_owned(),
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            compiled: OnceLock::new(),
        }
    }

    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether the regex has been compiled yet (compilation is lazy).
    pub fn is_compiled(&self) -> bool {
        self.compiled.get().is_some()
    }

    /// The compiled regex, or `None` if it cannot be compiled (logged once).
    fn get(&self) -> Option<&Regex> {
        self.compiled
            .get_or_init(|| match compile(&self.source) {
                Ok(re) => Some(re),
                Err(err) => {
                    tracing::error!(regex = %self.source, "rule regex does not compile: {err}");
                    None
                }
            })
            .as_ref()
    }

    /// Compiles now, returning the error text (used by validation of user rules and tests).
    pub fn force(&self) -> Result<(), String> {
        if let Some(re) = self.compiled.get() {
            return re
                .as_ref()
                .map(|_| ())
                .ok_or_else(|| "regex does not compile".to_owned());
        }
        let re = compile(&self.source)?;
        let _ = self.compiled.set(Some(re));
        Ok(())
    }

    /// Whether the regex matches somewhere in `hay` (`false` if it does not compile).
    pub fn is_match(&self, hay: &[u8]) -> bool {
        let Some(re) = self.get() else { return false };
        with_scratch(self.id, re, |s| {
            re.is_match_with(&mut s.cache, &Input::new(hay))
        })
    }

    /// Calls `each` with every successive non-overlapping match of the regex in `hay`
    /// (leftmost-first, as the `regex` crate's `captures_iter`), with its capture groups.
    /// Nothing happens if the regex does not compile.
    pub fn for_each_match(&self, hay: &[u8], mut each: impl FnMut(&Groups<'_>)) {
        let Some(re) = self.get() else { return };
        with_scratch(self.id, re, |scratch| {
            let Scratch { cache, caps } = scratch;
            let caps = caps.get_or_insert_with(|| re.create_captures());
            let mut searcher = Searcher::new(Input::new(hay));
            while searcher
                .advance(|input| {
                    re.search_captures_with(cache, input, caps);
                    Ok(caps.get_match())
                })
                .is_some()
            {
                each(&Groups { caps });
            }
        });
    }
}

/// The capture groups of one match (see [`LazyRegex::for_each_match`]).
#[derive(Debug)]
pub struct Groups<'a> {
    caps: &'a Captures,
}

impl Groups<'_> {
    /// The span of group `index` (0: the whole match), if it took part in the match.
    pub fn get(&self, index: usize) -> Option<Span> {
        self.caps.get_group(index)
    }
}

fn compile(source: &str) -> Result<Regex, String> {
    // As `regex::bytes::RegexBuilder` with `unicode(false)`: byte-oriented, leftmost-first.
    Regex::builder()
        .configure(
            Regex::config()
                .match_kind(MatchKind::LeftmostFirst)
                .utf8_empty(false)
                .nfa_size_limit(Some(REGEX_SIZE_LIMIT))
                // The one-pass DFA only speeds up reading the groups of a match found; it
                // is built eagerly and took a quarter of the compiled rules' memory.
                .onepass(false)
                // Each regex keeps its own prefilter (its literals: mostly the provider's
                // name in every case), although the keyword automaton has already found
                // where to look: without them the compiled rules are a fifth smaller (24
                // instead of 30 MB for 1,372 rules) but the registry tree scans 11% slower.
                .hybrid_cache_capacity(REGEX_DFA_CACHE),
        )
        .syntax(syntax::Config::new().unicode(false).utf8(false))
        .build(source)
        .map_err(|e| one_line(&e.to_string()))
}

pub(crate) fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What a search needs besides the regex: its cache and, for [`LazyRegex::for_each_match`],
/// room for the capture groups. Boxed, so that taking it out of the store moves a pointer.
struct Scratch {
    cache: Cache,
    caps: Option<Captures>,
}

struct Entry {
    scratch: Box<Scratch>,
    bytes: usize,
}

/// Bytes of regex caches held by the stores of all threads.
static HELD: AtomicUsize = AtomicUsize::new(0);

/// One thread's regex caches, by regex id, with the bytes they hold.
struct CacheStore {
    entries: HashMap<usize, Entry, BuildHasherDefault<IdHasher>>,
    bytes: usize,
    /// Bytes all threads may hold together before this one drops caches.
    budget: usize,
    /// Searches so far; seeds each eviction's random choice.
    clock: u64,
}

thread_local! {
    static CACHES: RefCell<CacheStore> = RefCell::new(CacheStore {
        entries: HashMap::default(),
        bytes: 0,
        budget: CACHE_BUDGET,
        clock: 0,
    });
}

/// Runs `f` with regex `id`'s scratch on this thread (made if missing). It is taken out of
/// the store meanwhile, so `f` may search other regexes.
fn with_scratch<R>(id: usize, re: &Regex, f: impl FnOnce(&mut Scratch) -> R) -> R {
    let taken = CACHES.with_borrow_mut(|store| store.take(id));
    let mut scratch = taken.unwrap_or_else(|| {
        Box::new(Scratch {
            cache: re.create_cache(),
            caps: None,
        })
    });
    let out = f(&mut scratch);
    CACHES.with_borrow_mut(|store| store.put(id, scratch));
    out
}

impl CacheStore {
    fn take(&mut self, id: usize) -> Option<Box<Scratch>> {
        let entry = self.entries.remove(&id)?;
        self.release(entry.bytes);
        Some(entry.scratch)
    }

    fn put(&mut self, id: usize, scratch: Box<Scratch>) {
        self.clock += 1;
        let bytes = std::mem::size_of::<Scratch>()
            + scratch.cache.memory_usage()
            + scratch
                .caps
                .as_ref()
                .map_or(0, |c| c.slots().len() * std::mem::size_of::<usize>());
        self.bytes += bytes;
        let held = HELD.fetch_add(bytes, Ordering::Relaxed) + bytes;
        self.entries.insert(id, Entry { scratch, bytes });
        if held > self.budget {
            self.evict(id);
        }
    }

    fn release(&mut self, bytes: usize) {
        self.bytes -= bytes;
        HELD.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Drops a pseudo-random choice of this thread's caches (never `keep`'s, in use now)
    /// until all threads together hold at most half the budget. Random rather than least
    /// recently used: keyword-dense input cycles through more caches than the budget holds,
    /// and LRU then drops each cache just before its rule needs it again, while a random
    /// choice keeps a share of the cycle (14.0 s against 15.8 s on a 64 MB file of 92,725
    /// findings, same output).
    fn evict(&mut self, keep: usize) {
        let round = self.clock;
        let mut order: Vec<(u64, usize)> = self
            .entries
            .keys()
            .filter(|&&id| id != keep)
            .map(|&id| (mix(id as u64 ^ round.rotate_left(32)), id))
            .collect();
        order.sort_unstable();
        for (_, id) in order {
            if HELD.load(Ordering::Relaxed) <= self.budget / 2 {
                break;
            }
            if let Some(e) = self.entries.remove(&id) {
                self.release(e.bytes);
            }
        }
        if self.entries.capacity() > 4 * self.entries.len().max(64) {
            self.entries.shrink_to_fit();
        }
    }
}

/// A 64-bit mixer (SplitMix64's finaliser): distinct inputs spread over the whole range.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

impl Drop for CacheStore {
    fn drop(&mut self) {
        HELD.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// Regex ids are unique integers: one multiplication spreads them over the table.
#[derive(Default)]
struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    fn write_usize(&mut self, n: usize) {
        self.0 = (n as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

/// Bytes of regex caches held by the calling thread (for tests and diagnostics).
pub fn thread_cache_bytes() -> usize {
    CACHES.with_borrow(|store| store.bytes)
}

fn count_captures(ast: &regex_syntax::ast::Ast) -> usize {
    use regex_syntax::ast::Ast;
    match ast {
        Ast::Group(g) => usize::from(g.capture_index().is_some()) + count_captures(&g.ast),
        Ast::Concat(c) => c.asts.iter().map(count_captures).sum(),
        Ast::Alternation(a) => a.asts.iter().map(count_captures).sum(),
        Ast::Repetition(r) => count_captures(&r.ast),
        _ => 0,
    }
}

/// Capture groups of a regex counted on its text, without parsing it: every `(` outside a
/// character class and not escaped, except non-capturing `(?…)` groups (named `(?P<…>` /
/// `(?<…>` groups do capture). Used for the embedded rules; a test checks it agrees with
/// the syntax tree on every one of them.
pub fn count_captures_in_text(source: &str) -> usize {
    let b = source.as_bytes();
    let mut i = 0;
    let mut depth = 0usize; // nesting of character classes
    let mut groups = 0;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 1,
            b'[' => {
                depth += 1;
                // A `]` right after `[` or `[^` is a literal.
                if b.get(i + 1) == Some(&b'^') {
                    i += 1;
                }
                if b.get(i + 1) == Some(&b']') {
                    i += 1;
                }
            }
            b']' if depth > 0 => depth -= 1,
            b'(' if depth == 0 => {
                let named = b.get(i + 2) == Some(&b'<')
                    || (b.get(i + 2) == Some(&b'P') && b.get(i + 3) == Some(&b'<'));
                if b.get(i + 1) != Some(&b'?') || named {
                    groups += 1;
                }
            }
            _ => {}
        }
        i += 1;
    }
    groups
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// Every match and group the `regex` crate reports, in order.
    fn regex_crate(source: &str, hay: &[u8]) -> Vec<Vec<Option<(usize, usize)>>> {
        let re = regex::bytes::RegexBuilder::new(source)
            .unicode(false)
            .build()
            .unwrap();
        re.captures_iter(hay)
            .map(|c| c.iter().map(|g| g.map(|m| (m.start(), m.end()))).collect())
            .collect()
    }

    fn ours(source: &str, hay: &[u8]) -> Vec<Vec<Option<(usize, usize)>>> {
        let (re, groups) = LazyRegex::parse(source).unwrap();
        let mut out = Vec::new();
        re.for_each_match(hay, |g| {
            out.push(
                (0..=groups)
                    .map(|i| g.get(i).map(|s| (s.start, s.end)))
                    .collect(),
            );
        });
        out
    }

    #[test]
    fn matches_as_the_regex_crate_does() {
        let hay: &[u8] = b"key=AKIA0123456789ABCDEF x\xff\xfe key=ghp_abc \n\nab aab =\xc3\xa9=";
        for source in [
            r"(?-u)key=([A-Za-z0-9_]+)",
            r"(?-u)\b(AKIA[0-9A-Z]{16})\b",
            r"(?-u)a*",
            r"(?-u)(?:^|\n)(\n?)",
            r"(?-u)=(.)=",
            r"(?-u)(?i)(KEY)=(x)?",
            r"(?-u)[\x80-\xff]+",
        ] {
            assert_eq!(ours(source, hay), regex_crate(source, hay), "{source}");
        }
    }

    #[test]
    fn is_match_and_a_regex_that_does_not_compile() {
        let (re, _) = LazyRegex::parse(r"(?-u)ghp_[a-z]+").unwrap();
        assert!(re.is_match(b"x ghp_abc"));
        assert!(!re.is_match(b"x ghp_"));
        // Parses, but is too big to compile: it matches nothing and does not panic.
        let (big, _) = LazyRegex::parse(r"(?-u)(?:[a-z]{100}){1000}").unwrap();
        assert!(big.force().is_err());
        assert!(!big.is_match(b"abc"));
        let mut n = 0;
        big.for_each_match(b"abc", |_| n += 1);
        assert_eq!(n, 0);
    }

    #[test]
    fn a_thread_keeps_its_caches_under_the_budget() {
        // A small budget, so that this test's caches do not all fit (each test has its
        // own thread, hence its own store).
        let budget = 256 * 1024;
        CACHES.with_borrow_mut(|store| store.budget = budget);
        let regexes: Vec<LazyRegex> = (0..400)
            .map(|i| {
                LazyRegex::parse(&format!(r"(?-u)k{i}_[A-Za-z0-9]{{8,}}[^x]*y"))
                    .unwrap()
                    .0
            })
            .collect();
        let hay: Vec<u8> = (0..20_000u32)
            .map(|i| b"abcdefghijklmnopqrstuvwxyz0123456789_ "[(i * 7 % 38) as usize])
            .collect();
        let mut found = 0;
        for re in &regexes {
            re.for_each_match(&hay, |_| found += 1);
            assert!(thread_cache_bytes() <= budget, "{}", thread_cache_bytes());
        }
        assert_eq!(found, 0);
        // Caches were dropped on the way (400 do not fit), and a regex whose cache was
        // dropped still matches with a new one.
        let held = CACHES.with_borrow(|store| store.entries.len());
        assert!(held > 0 && held < regexes.len(), "{held} caches held");
        assert!(regexes[0].is_match(b"k0_abcdefgh y"));
        assert!(!regexes[0].is_match(b"k0_abcdefgh x"));
    }

    #[test]
    fn the_text_count_of_groups_agrees_with_the_parser() {
        for source in [
            r"(a)(?:b)(?P<n>c)(?<m>d)[(]\(",
            r"[]()]([^]a(])",
            r"(?i)(x(y))",
        ] {
            let (_, parsed) = LazyRegex::parse(source).unwrap();
            assert_eq!(count_captures_in_text(source), parsed, "{source}");
        }
    }
}
