//! The one redaction filter: whatever leaves the process (log lines, span fields, stored
//! events, what the events API returns) passes through a [`Redactor`] first.
//!
//! A [`Redactor`] knows two things:
//! - **secret values** (every value in the secret store): each is replaced by [`REDACTED`],
//!   also in the forms it takes once encoded (percent-encoded with upper- or lower-case hex,
//!   form-encoded, JSON-escaped, `Debug`-escaped, trimmed). Overlapping occurrences are merged,
//!   so a value containing another is replaced whole. Values of fewer than
//!   [`MIN_SUBSTRING_CHARS`] characters are replaced only where they stand alone (not between
//!   letters or digits): a one-character secret would otherwise eat every word.
//! - **patterns** ([`Patterns::On`]), replaced by typed markers ([`Kind::marker`]): bearer
//!   tokens and `Authorization` values, API-key-like assignments (`api_key=…`, `"token": "…"`,
//!   keeping the key), credentials in URLs (`scheme://user:…@host`), well-known key shapes
//!   (`sk-…`, `ghp_…`, `AKIA…`, `xoxb-…`, `AIza…`, Scaff's own `scaff_…`), e-mail addresses,
//!   phone numbers (E.164 with `+`, and the separated North-American forms), US social
//!   security numbers, and card numbers (13–19 digits starting 2–6, plain or in the usual
//!   groups, passing the Luhn check — so an order id is kept).
//!
//! # Implementation
//! Hand-written over two crates already in the build: secret values are found with one
//! [`aho_corasick`] automaton (overlapping matches, linear in the text), patterns with one
//! combined [`regex`] (compiled once, linear time: no catastrophic backtracking). The regex
//! finds candidates; Rust code then checks what a regex cannot say cheaply: the Luhn sum, SSN
//! area rules, that a number is not glued to letters, digits or a decimal point (so ids,
//! floats, UUIDs, dates and versions are left whole rather than cut into nonsense), and which
//! group of a digit run is the card. Text with no digit, `@` or trigger word skips the regex.
//!
//! What is deliberately not redacted: JWTs on their own (resume tokens are handed to users; a
//! JWT after `Bearer` or under a token-like key is redacted whole, never in part), numbers
//! failing the checks above, and `null`/`true`/`false` under sensitive keys.
//!
//! # Sharing
//! [`SharedRedactor`] is a cheap handle whose redactor is swapped whole when the secret set
//! changes; [`global`] is the process-wide one the log writer and the secrets service use.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::fmt::{self, Write as _};
use std::sync::{Arc, LazyLock, Mutex, RwLock};

use aho_corasick::{AhoCorasick, MatchKind};
use regex::{Captures, Regex};
use serde_json::Value;

/// What a secret value is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// Secret values of at least this many characters are replaced wherever they occur; shorter
/// ones only where they stand alone (no letter or digit right before or after).
pub const MIN_SUBSTRING_CHARS: usize = 4;

/// What a pattern found, and so which marker replaces it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A bearer token (`Bearer …`, `Authorization: Bearer …`).
    Bearer,
    /// An API key, password or other credential: assignments, key shapes, URL passwords.
    Key,
    /// An e-mail address.
    Email,
    /// A phone number.
    Phone,
    /// A US social security number.
    Ssn,
    /// A payment card number (Luhn-checked).
    Card,
}

impl Kind {
    /// The marker that replaces what was found, e.g. `[REDACTED:email]`.
    pub const fn marker(self) -> &'static str {
        match self {
            Kind::Bearer => "[REDACTED:bearer]",
            Kind::Key => "[REDACTED:key]",
            Kind::Email => "[REDACTED:email]",
            Kind::Phone => "[REDACTED:phone]",
            Kind::Ssn => "[REDACTED:ssn]",
            Kind::Card => "[REDACTED:card]",
        }
    }
}

/// Whether a [`Redactor`] also replaces patterns (tokens, keys, personal data) and values
/// under sensitive JSON keys, or only the secret values it knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Patterns {
    /// Only secret values.
    Off,
    /// Secret values, then patterns.
    #[default]
    On,
}

/// Replaces secret values with [`REDACTED`] and, with [`Patterns::On`], patterns with typed
/// markers. Cheap to clone (the secret automaton is shared). `Debug` shows counts only.
#[derive(Clone)]
pub struct Redactor {
    secrets: Arc<SecretSet>,
    patterns: Patterns,
}

impl Default for Redactor {
    /// No secret values; patterns on.
    fn default() -> Self {
        Self {
            secrets: Arc::new(SecretSet::default()),
            patterns: Patterns::On,
        }
    }
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.secrets.values.len())
            .field("patterns", &self.patterns)
            .finish()
    }
}

impl Redactor {
    /// A redactor for these secret values (empty ones are ignored, duplicates merged).
    pub fn new<I, S>(secrets: I, patterns: Patterns) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let values = secrets
            .into_iter()
            .filter(|s| !s.as_ref().is_empty())
            .map(|s| s.as_ref().to_string())
            .collect();
        Self {
            secrets: Arc::new(SecretSet::build(values)),
            patterns,
        }
    }

    /// The same secret values with patterns switched on or off (cheap: nothing is rebuilt).
    pub fn with_patterns(&self, patterns: Patterns) -> Self {
        Self {
            secrets: self.secrets.clone(),
            patterns,
        }
    }

    /// Whether patterns are replaced too.
    pub fn patterns(&self) -> Patterns {
        self.patterns
    }

    /// How many distinct secret values this redactor knows.
    pub fn secret_count(&self) -> usize {
        self.secrets.values.len()
    }

    /// `s` with secret values and (if on) patterns replaced; borrowed when nothing was found.
    pub fn text<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let after_secrets = self.secrets.replace(s);
        if self.patterns == Patterns::Off {
            return after_secrets;
        }
        let redacted = match after_secrets {
            Cow::Borrowed(b) => replace_patterns(b),
            Cow::Owned(o) => {
                if let Cow::Owned(p) = replace_patterns(&o) {
                    Cow::Owned(p)
                } else {
                    Cow::Owned(o)
                }
            }
        };
        // Personal data hides in URLs percent-encoded (`jane%40example.com`): when decoding
        // reveals something to redact, the decoded, redacted text is what is kept.
        if let Some(decoded) = percent_decoded(&redacted)
            && let Cow::Owned(clean) = replace_patterns(&decoded)
        {
            return Cow::Owned(clean);
        }
        redacted
    }

    /// Redacts `value` in place: every string and object key (recursively); with patterns on,
    /// also the whole value under a sensitive key ([`is_sensitive_key`]; `null`, booleans and
    /// empty values are kept) and integers that are card numbers.
    pub fn json(&self, value: &mut Value) {
        match value {
            Value::String(s) => {
                let redacted = match self.text(s) {
                    Cow::Owned(r) => Some(r),
                    Cow::Borrowed(_) => None,
                };
                if let Some(r) = redacted {
                    *s = r;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => {
                let rekey = map.keys().any(|k| matches!(self.text(k), Cow::Owned(_)));
                if rekey {
                    let old = std::mem::take(map);
                    for (k, mut v) in old {
                        self.entry(&k, &mut v);
                        map.insert(self.text(&k).into_owned(), v);
                    }
                } else {
                    for (k, v) in map.iter_mut() {
                        self.entry(k, v);
                    }
                }
            }
            Value::Number(n) => {
                if self.patterns == Patterns::On
                    && let Some(u) = n.as_u64()
                    && u >= 1_000_000_000_000
                {
                    let digits = u.to_string();
                    if let Cow::Owned(r) = replace_patterns(&digits) {
                        *value = Value::String(r);
                    }
                }
            }
            Value::Null | Value::Bool(_) => {}
        }
    }

    /// `value` redacted into a new value (see [`Redactor::json`]).
    pub fn json_owned(&self, mut value: Value) -> Value {
        self.json(&mut value);
        value
    }

    fn entry(&self, key: &str, value: &mut Value) {
        if self.patterns == Patterns::On && is_sensitive_key(key) && worth_hiding(value) {
            *value = Value::String(Kind::Key.marker().to_string());
        } else {
            self.json(value);
        }
    }
}

/// Whether a value is hidden whole under a sensitive key.
fn worth_hiding(value: &Value) -> bool {
    match value {
        Value::Null | Value::Bool(_) => false,
        Value::String(s) => !s.is_empty() && !s.starts_with("[REDACTED"),
        Value::Number(_) => true,
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}

/// Whether a JSON key (or an assignment's name) names a credential: it ends with `password`,
/// `passwd`, `secret`, `token`, `api_key`/`apikey`, `access_key`, `secret_key`,
/// `private_key` or `authorization`, ignoring case, `-`, `_`, `.` and spaces (so
/// `X-Api-Key`, `client_secret`, `github_token`, `DB_PASSWORD` are sensitive; `tokens_prompt`,
/// `max_tokens` and `secret_name` are not).
pub fn is_sensitive_key(key: &str) -> bool {
    const SUFFIXES: [&str; 9] = [
        "password",
        "passwd",
        "secret",
        "token",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "authorization",
    ];
    if key.len() > 256 {
        return false;
    }
    let normalized: String = key
        .chars()
        .filter(|c| !matches!(c, '-' | '_' | '.' | ' '))
        .flat_map(char::to_lowercase)
        .collect();
    SUFFIXES.iter().any(|s| normalized.ends_with(s))
}

// ---------------------------------------------------------------------------------------------
// Secret values

#[derive(Default)]
struct SecretSet {
    /// The raw values, kept to rebuild with more ([`SharedRedactor::add_secrets`]).
    values: BTreeSet<String>,
    matcher: Matcher,
}

#[derive(Default)]
enum Matcher {
    #[default]
    Empty,
    Automaton {
        ac: AhoCorasick,
        /// Per pattern id: only where it stands alone (shorter than `MIN_SUBSTRING_CHARS`).
        standalone: Vec<bool>,
    },
    /// When the automaton cannot be built (far too many or too long values): plain search.
    Naive(Vec<(String, bool)>),
}

impl SecretSet {
    fn build(values: BTreeSet<String>) -> Self {
        let mut needles: BTreeSet<String> = BTreeSet::new();
        for v in &values {
            for form in encoded_forms(v) {
                if !form.is_empty() {
                    needles.insert(form);
                }
            }
        }
        if needles.is_empty() {
            return Self {
                values,
                matcher: Matcher::Empty,
            };
        }
        let needles: Vec<(String, bool)> = needles
            .into_iter()
            .map(|n| {
                let short = n.chars().count() < MIN_SUBSTRING_CHARS;
                (n, short)
            })
            .collect();
        let built = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(needles.iter().map(|(n, _)| n.as_str()));
        let matcher = match built {
            Ok(ac) => Matcher::Automaton {
                ac,
                standalone: needles.iter().map(|(_, s)| *s).collect(),
            },
            Err(_) => Matcher::Naive(needles),
        };
        Self { values, matcher }
    }

    fn replace<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut spans: Vec<(usize, usize)> = Vec::new();
        match &self.matcher {
            Matcher::Empty => return Cow::Borrowed(s),
            Matcher::Automaton { ac, standalone } => {
                for m in ac.find_overlapping_iter(s) {
                    let short = standalone
                        .get(m.pattern().as_usize())
                        .copied()
                        .unwrap_or(false);
                    if !short || stands_alone(s, m.start(), m.end()) {
                        spans.push((m.start(), m.end()));
                    }
                }
            }
            Matcher::Naive(needles) => {
                for (needle, short) in needles {
                    for (at, _) in s.match_indices(needle.as_str()) {
                        let end = at + needle.len();
                        if !*short || stands_alone(s, at, end) {
                            spans.push((at, end));
                        }
                    }
                }
            }
        }
        if spans.is_empty() {
            return Cow::Borrowed(s);
        }
        spans.sort_unstable();
        let mut out = String::with_capacity(s.len());
        let mut copied = 0;
        let mut i = 0;
        while i < spans.len() {
            let (start, mut end) = spans[i];
            i += 1;
            while i < spans.len() && spans[i].0 < end {
                end = end.max(spans[i].1);
                i += 1;
            }
            out.push_str(&s[copied..start]);
            out.push_str(REDACTED);
            copied = end;
        }
        out.push_str(&s[copied..]);
        Cow::Owned(out)
    }
}

/// The forms a value takes in URLs, JSON and `Debug` output, besides itself.
fn encoded_forms(value: &str) -> Vec<String> {
    let mut forms = vec![value.to_string()];
    let trimmed = value.trim();
    if trimmed != value && !trimmed.is_empty() {
        forms.push(trimmed.to_string());
    }
    let mut upper = String::with_capacity(value.len());
    let mut lower = String::with_capacity(value.len());
    let mut form = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            upper.push(b as char);
            lower.push(b as char);
            form.push(b as char);
        } else {
            let _ = write!(upper, "%{b:02X}");
            let _ = write!(lower, "%{b:02x}");
            if b == b' ' {
                form.push('+');
            } else {
                let _ = write!(form, "%{b:02X}");
            }
        }
    }
    forms.extend([upper, lower, form]);
    if let Ok(json) = serde_json::to_string(value)
        && json.len() >= 2
    {
        forms.push(json[1..json.len() - 1].to_string());
    }
    forms.push(value.escape_debug().to_string());
    forms.sort();
    forms.dedup();
    forms
}

/// No letter or digit right before `start` or right after `end`.
fn stands_alone(s: &str, start: usize, end: usize) -> bool {
    let before = s[..start].chars().next_back();
    let after = s[end..].chars().next();
    !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
}

// ---------------------------------------------------------------------------------------------
// Patterns

/// Optional ANSI colour codes (the text log format colours field names on a terminal).
const ANSI: &str = r"(?:\x1b\[[0-9;]*m)*";

/// Names that make `name=value` / `"name": "value"` a credential: ending with one of these.
const KEY_NAMES: &str = r"(?i:[a-z0-9_.\-]*?(?:api[_\-]?key|access[_\-]?key|secret[_\-]?key|private[_\-]?key|secret|token|password|passwd|authorization))";

/// Authorization schemes kept in front of a redacted `Authorization` value.
const SCHEME_WORDS: [&str; 9] = [
    "bearer",
    "basic",
    "digest",
    "token",
    "bot",
    "negotiate",
    "ntlm",
    "apikey",
    "dpop",
];

const SSN: &str = r"(?P<ssn>[0-9]{3}-[0-9]{2}-[0-9]{4})";
const NANP: &str = r"(?P<nanp>(?:\([0-9]{3}\)[ .\-]?|[0-9]{3}[ .\-])[0-9]{3}[ .\-][0-9]{4})";

/// Every pattern in one regex; the order only matters between alternatives that can start at
/// the same place (digit runs before SSN and phone numbers: a run's groups are split up in code).
static PATTERNS: LazyLock<Regex> = LazyLock::new(|| {
    let schemes = format!("(?i:{})", SCHEME_WORDS.join("|"));
    let source = [
        // Credentials in a URL: `scheme://user:password@host`.
        r"(?P<url>[A-Za-z][A-Za-z0-9+.\-]*://[^\s/?#@:]+:)(?P<urlpw>[^\s/?#@]+)@".to_string(),
        // `api_key=…`, `"token": "…"`, `Authorization: Bearer …`, `password='…'`.
        format!(
            r#"(?P<akey>{KEY_NAMES})(?P<asep>{ANSI}\\?["']?{ANSI}[ \t]*{ANSI}[:=]{ANSI}[ \t]*)(?:\\"(?P<av1>(?:[^"\\]|\\[^"])+)\\"|"(?P<av2>(?:[^"\\]|\\.)+)"|'(?P<av3>[^'\r\n]+)'|Some\("(?P<av5>(?:[^"\\]|\\.)+)"\)|(?:(?P<ascheme>{schemes})[ \t]+)?(?P<av4>[^\s"'\\,;&<>(){{}}\[\]\x1b]+))"#
        ),
        // `Bearer <token>` anywhere.
        r"(?P<bearer>(?i:bearer))[ \t]+(?P<btok>[A-Za-z0-9\-._~+/]+=*)".to_string(),
        r"(?P<email>[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(?:\.[A-Za-z0-9\-]+)*\.[A-Za-z]{2,})"
            .to_string(),
        concat!(
            r"(?P<kshape>sk-[A-Za-z0-9_\-]{20,}|(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}",
            r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{22,}|(?:AKIA|ASIA)[0-9A-Z]{16}",
            r"|xox[abposr]-[A-Za-z0-9\-]{10,}|AIza[0-9A-Za-z_\-]{35}",
            // Scaff's own API keys.
            r"|scaff_[a-z2-7]{8}_[a-z2-7]{32})"
        )
        .to_string(),
        // 13 or more digits, single spaces or dashes between: card candidates (and whatever
        // SSN or phone number sits among them).
        r"(?P<run>[0-9](?:[ \-]?[0-9]){12,})".to_string(),
        SSN.to_string(),
        NANP.to_string(),
        r"(?P<e164>\+[0-9]{1,3}(?:[ .\-]?\([0-9]{1,4}\))?(?:[ .\-]?[0-9]){6,14})".to_string(),
    ]
    .join("|");
    Regex::new(&source).expect("the redaction patterns compile")
});

/// SSNs and phone numbers among the groups of a digit run.
static IN_RUN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(&format!("{SSN}|{NANP}")).expect("the SSN and phone patterns compile")
});

/// Words that can start a pattern without a digit or `@` (the fast path's test).
static TRIGGERS: LazyLock<Option<AhoCorasick>> = LazyLock::new(|| {
    AhoCorasick::builder()
        .ascii_case_insensitive(true)
        .build([
            "key",
            "secret",
            "token",
            "passw",
            "authoriz",
            "bearer",
            "://",
            "sk-",
            "sk_",
            "rk_",
            "ghp_",
            "gho_",
            "ghu_",
            "ghs_",
            "ghr_",
            "github_pat_",
            "xox",
            "akia",
            "asia",
            "aiza",
            "scaff_",
        ])
        .ok()
});

/// Bearer "tokens" that are words of prose about tokens.
const NOT_TOKENS: [&str; 9] = [
    "token",
    "tokens",
    "auth",
    "authentication",
    "authorization",
    "scheme",
    "header",
    "realm",
    "credentials",
];

fn could_match(s: &str) -> bool {
    s.bytes().any(|b| b.is_ascii_digit() || b == b'@')
        || TRIGGERS.as_ref().is_none_or(|t| t.is_match(s))
}

/// One replacement: the byte range and what goes there.
type Repl = (usize, usize, Cow<'static, str>);

fn replace_patterns(s: &str) -> Cow<'_, str> {
    if !could_match(s) {
        return Cow::Borrowed(s);
    }
    let mut repls: Vec<Repl> = Vec::new();
    let mut pos = 0;
    while pos <= s.len() {
        let Some(caps) = PATTERNS.captures_at(s, pos) else {
            break;
        };
        let Some(whole) = caps.get(0) else { break };
        pos = match handle(s, &caps, &mut repls) {
            Next::After if whole.end() > whole.start() => whole.end(),
            Next::After => next_char(s, whole.start()),
            Next::Retry => next_char(s, whole.start()),
        };
    }
    if repls.is_empty() {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut copied = 0;
    for (start, end, with) in repls {
        if start < copied {
            continue;
        }
        out.push_str(&s[copied..start]);
        out.push_str(&with);
        copied = end;
    }
    out.push_str(&s[copied..]);
    Cow::Owned(out)
}

/// Where the search goes on after a match.
enum Next {
    /// After the match (it was replaced, or looked at whole).
    After,
    /// One character after its start (it was rejected; something may start inside it).
    Retry,
}

fn next_char(s: &str, at: usize) -> usize {
    at + s[at..].chars().next().map_or(1, char::len_utf8)
}

fn handle(s: &str, caps: &Captures<'_>, repls: &mut Vec<Repl>) -> Next {
    if let Some(pw) = caps.name("urlpw") {
        if !pw.as_str().starts_with("[REDACTED") {
            repls.push((pw.start(), pw.end(), Cow::Borrowed(Kind::Key.marker())));
        }
        return Next::After;
    }
    if let Some(key) = caps.name("akey") {
        assignment(caps, key.as_str(), repls);
        return Next::After;
    }
    if let (Some(word), Some(tok)) = (caps.name("bearer"), caps.name("btok")) {
        let t = tok.as_str();
        let prose = NOT_TOKENS.iter().any(|w| t.eq_ignore_ascii_case(w))
            || (t.len() < 8 && t.bytes().all(|b| b.is_ascii_alphabetic()));
        if prose || glued_word_before(s, word.start()) {
            return Next::Retry;
        }
        repls.push((tok.start(), tok.end(), Cow::Borrowed(Kind::Bearer.marker())));
        return Next::After;
    }
    if let Some(m) = caps.name("email") {
        repls.push((m.start(), m.end(), Cow::Borrowed(Kind::Email.marker())));
        return Next::After;
    }
    if let Some(m) = caps.name("kshape") {
        let glued = s[..m.start()]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '-')
            || s[m.end()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_');
        if glued {
            // Whatever starts inside is glued to it as well.
            return Next::After;
        }
        repls.push((m.start(), m.end(), Cow::Borrowed(Kind::Key.marker())));
        return Next::After;
    }
    if let Some(m) = caps.name("run") {
        digit_run(s, m.start(), m.end(), repls);
        return Next::After;
    }
    if let Some(m) = caps.name("ssn").or_else(|| caps.name("nanp")) {
        return if let Some(kind) = ssn_or_phone(s, caps, m.start(), m.end()) {
            repls.push((m.start(), m.end(), Cow::Borrowed(kind.marker())));
            Next::After
        } else {
            Next::Retry
        };
    }
    if let Some(m) = caps.name("e164") {
        return match e164_end(s, m.start(), m.end()) {
            Some(end) => {
                repls.push((m.start(), end, Cow::Borrowed(Kind::Phone.marker())));
                Next::After
            }
            None => Next::Retry,
        };
    }
    Next::After
}

/// Redacts the value of `name=value` (keeping the name, quotes and an `Authorization`
/// scheme); JSON stays JSON (a bare value after a quoted key becomes a quoted marker).
fn assignment(caps: &Captures<'_>, key: &str, repls: &mut Vec<Repl>) {
    let authorization = key.to_ascii_lowercase().ends_with("authorization");
    let quoted = ["av1", "av2", "av3", "av5"]
        .iter()
        .find_map(|name| caps.name(name));
    let (mut start, end, mut scheme) = if let Some(v) = quoted {
        (v.start(), v.end(), None)
    } else if let Some(v) = caps.name("av4") {
        let (start, scheme) = match caps.name("ascheme") {
            Some(sc) if authorization => (v.start(), Some(sc.as_str())),
            Some(sc) => (sc.start(), None),
            None => (v.start(), None),
        };
        (start, v.end(), scheme)
    } else {
        return;
    };
    let text = match quoted.or_else(|| caps.name("av4")) {
        Some(v) => v.as_str(),
        None => return,
    };
    if text.starts_with("[REDACTED") {
        return;
    }
    if authorization && quoted.is_none() && scheme.is_none() && is_scheme(text) {
        // `Authorization: Bearer [REDACTED]`: the credential is already gone.
        return;
    }
    if quoted.is_none()
        && scheme.is_none()
        && ["true", "false", "null", "none"]
            .iter()
            .any(|w| text.eq_ignore_ascii_case(w))
    {
        return;
    }
    if let Some(v) = quoted
        && authorization
        && let Some((word, rest)) = v.as_str().split_once([' ', '\t'])
        && is_scheme(word)
    {
        let rest_trimmed = rest.trim_start_matches([' ', '\t']);
        if rest_trimmed.is_empty() || rest_trimmed.starts_with("[REDACTED") {
            return;
        }
        start = v.end() - rest_trimmed.len();
        scheme = Some(word);
    }
    let kind = if scheme.is_some_and(|s| s.eq_ignore_ascii_case("bearer")) {
        Kind::Bearer
    } else {
        Kind::Key
    };
    let json_bare = quoted.is_none()
        && caps
            .name("asep")
            .is_some_and(|sep| sep.as_str().contains('"') && sep.as_str().contains(':'));
    let with = if json_bare {
        Cow::Owned(format!("\"{}\"", kind.marker()))
    } else {
        Cow::Borrowed(kind.marker())
    };
    repls.push((start, end, with));
}

fn is_scheme(word: &str) -> bool {
    SCHEME_WORDS.iter().any(|s| word.eq_ignore_ascii_case(s))
}

/// A letter, digit or `_` right before `at`.
fn glued_word_before(s: &str, at: usize) -> bool {
    s[..at]
        .chars()
        .next_back()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
}

/// Whether a number starting at `at` continues something: a letter, digit or `_` right
/// before it, or `-`, `.`, `+`, `/` that itself follows a letter or digit (`v1.2`, `0.41…`,
/// `ord-4111…`, `/runs/4111…`).
fn glued_before(s: &str, at: usize) -> bool {
    let mut back = s[..at].chars().rev();
    match back.next() {
        None => false,
        Some(c) if c.is_alphanumeric() || c == '_' => true,
        Some('-' | '.' | '+' | '/') => back.next().is_some_and(char::is_alphanumeric),
        Some(_) => false,
    }
}

/// Whether a number ending at `at` goes on: a letter, digit or `_` right after it, or `-`,
/// `.`, `/`, `@` followed by a letter or digit (`…4567.5`, `…-2`); a full stop ending a
/// sentence is fine.
fn glued_after(s: &str, at: usize) -> bool {
    let mut ahead = s[at..].chars();
    match ahead.next() {
        None => false,
        Some(c) if c.is_alphanumeric() || c == '_' || c == '@' => true,
        Some('-' | '.' | '/') => ahead.next().is_some_and(char::is_alphanumeric),
        Some(_) => false,
    }
}

/// An SSN (valid area, group and serial) or a separated phone number, standing alone.
fn ssn_or_phone(s: &str, caps: &Captures<'_>, start: usize, end: usize) -> Option<Kind> {
    if glued_before(s, start) || glued_after(s, end) {
        return None;
    }
    if let Some(m) = caps.name("ssn") {
        let t = m.as_str();
        let (area, group, serial) = (&t[0..3], &t[4..6], &t[7..11]);
        let valid = area != "000"
            && area != "666"
            && !area.starts_with('9')
            && group != "00"
            && serial != "0000";
        return valid.then_some(Kind::Ssn);
    }
    Some(Kind::Phone)
}

/// Where an E.164 number starting at `start` ends: 8–15 digits (11 after `+1 `), cut after a
/// whole group if the match ran on into a following number; `None` when it is not one.
fn e164_end(s: &str, start: usize, end: usize) -> Option<usize> {
    if glued_word_before(s, start) {
        return None;
    }
    let text = &s[start..end];
    // North America (+1) numbers have exactly 11 digits; others at most 15.
    let max = if text.starts_with("+1") && !text[2..].starts_with(|c: char| c.is_ascii_digit()) {
        11
    } else {
        15
    };
    let mut digits = 0;
    let mut best = None;
    for (i, c) in text.char_indices() {
        if c.is_ascii_digit() {
            digits += 1;
            let at_end = i + 1 == text.len();
            let group_ends = text[i + 1..]
                .chars()
                .next()
                .is_some_and(|n| matches!(n, ' ' | '.' | '-'));
            if (8..=max).contains(&digits) && (at_end && !glued_after(s, end) || group_ends) {
                best = Some(start + i + 1);
            }
        }
    }
    best
}

/// A run of digit groups: the card numbers in it (the longest valid one from the left each
/// time), then SSNs and phone numbers in what is left.
fn digit_run(s: &str, start: usize, end: usize, repls: &mut Vec<Repl>) {
    let mut groups: Vec<(usize, usize)> = Vec::new();
    let bytes = s.as_bytes();
    let mut i = start;
    while i < end {
        let g = i;
        while i < end && bytes[i].is_ascii_digit() {
            i += 1;
        }
        groups.push((g, i));
        i += 1; // the separator
    }
    let left_glued = glued_before(s, start);
    let right_glued = glued_after(s, end);
    let mut gap_start = start;
    let mut g = 0;
    while g < groups.len() {
        let mut found = None;
        let mut digits = 0;
        for j in g..groups.len() {
            digits += groups[j].1 - groups[j].0;
            if digits > 19 {
                break;
            }
            let edge_glued = (g == 0 && left_glued) || (j + 1 == groups.len() && right_glued);
            if digits >= 13 && !edge_glued && card_shape(&groups[g..=j]) {
                let number: Vec<u8> = groups[g..=j]
                    .iter()
                    .flat_map(|&(a, b)| bytes[a..b].iter().map(|d| d - b'0'))
                    .collect();
                if is_card_number(&number) {
                    found = Some(j);
                }
            }
        }
        if let Some(j) = found {
            in_run(s, gap_start, groups[g].0, repls);
            repls.push((groups[g].0, groups[j].1, Cow::Borrowed(Kind::Card.marker())));
            gap_start = groups[j].1;
            g = j + 1;
        } else {
            g += 1;
        }
    }
    in_run(s, gap_start, end, repls);
}

/// One group, or the printed groupings: fours (the last one shorter), or 4-6-5 / 4-6-4.
fn card_shape(groups: &[(usize, usize)]) -> bool {
    let lens: Vec<usize> = groups.iter().map(|(a, b)| b - a).collect();
    match lens.as_slice() {
        [_] => true,
        [4, 6, 5] | [4, 6, 4] => true,
        [init @ .., last] => init.iter().all(|&l| l == 4) && (1..=4).contains(last),
        [] => false,
    }
}

/// Issuer digit 2–6, not all one digit, and the Luhn check.
fn is_card_number(digits: &[u8]) -> bool {
    let Some(&first) = digits.first() else {
        return false;
    };
    if !(2..=6).contains(&first) || digits.iter().all(|&d| d == first) {
        return false;
    }
    luhn(digits)
}

/// The Luhn checksum over decimal digits (each 0–9).
fn luhn(digits: &[u8]) -> bool {
    let sum: u32 = digits
        .iter()
        .rev()
        .enumerate()
        .map(|(i, &d)| {
            let d = u32::from(d);
            if i % 2 == 1 {
                let twice = d * 2;
                if twice > 9 { twice - 9 } else { twice }
            } else {
                d
            }
        })
        .sum();
    sum.is_multiple_of(10)
}

/// SSNs and phone numbers in `s[from..to]` (part of a digit run), checked against all of `s`.
fn in_run(s: &str, from: usize, to: usize, repls: &mut Vec<Repl>) {
    let hay = &s[..to];
    let mut pos = from;
    while pos < to {
        let Some(caps) = IN_RUN.captures_at(hay, pos) else {
            break;
        };
        let Some(m) = caps.get(0) else { break };
        if let Some(kind) = ssn_or_phone(s, &caps, m.start(), m.end()) {
            repls.push((m.start(), m.end(), Cow::Borrowed(kind.marker())));
            pos = m.end();
        } else {
            pos = m.start() + 1;
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Sharing

/// A cheap-to-clone handle on the current [`Redactor`], swapped whole when the secret set
/// changes; readers never wait for a rebuild.
#[derive(Clone, Default)]
pub struct SharedRedactor {
    inner: Arc<SharedInner>,
}

#[derive(Default)]
struct SharedInner {
    current: RwLock<Arc<Redactor>>,
    /// Serializes rebuilds, so two concurrent additions are both kept.
    writer: Mutex<()>,
}

impl fmt::Debug for SharedRedactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("SharedRedactor")
            .field(&self.current())
            .finish()
    }
}

impl SharedRedactor {
    /// A handle starting with `redactor`.
    pub fn new(redactor: Redactor) -> Self {
        Self {
            inner: Arc::new(SharedInner {
                current: RwLock::new(Arc::new(redactor)),
                writer: Mutex::new(()),
            }),
        }
    }

    /// The redactor now in force.
    pub fn current(&self) -> Arc<Redactor> {
        self.inner
            .current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Puts `redactor` in force.
    pub fn set(&self, redactor: Redactor) {
        let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        self.swap(redactor);
    }

    /// Replaces the secret values (keeping the patterns setting).
    pub fn set_secrets<I, S>(&self, values: I)
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let patterns = self.current().patterns;
        self.swap(Redactor::new(values, patterns));
    }

    /// Adds secret values to those already known, rebuilding only when one is new; returns
    /// whether it did. Values are never dropped this way, so a racing load of an older set
    /// cannot undo a newer one.
    pub fn add_secrets<I, S>(&self, values: I) -> bool
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let _writer = self.inner.writer.lock().unwrap_or_else(|p| p.into_inner());
        let current = self.current();
        let known = &current.secrets.values;
        let new: Vec<String> = values
            .into_iter()
            .filter(|v| !v.as_ref().is_empty() && !known.contains(v.as_ref()))
            .map(|v| v.as_ref().to_string())
            .collect();
        if new.is_empty() {
            return false;
        }
        let mut all = known.clone();
        all.extend(new);
        self.swap(Redactor {
            secrets: Arc::new(SecretSet::build(all)),
            patterns: current.patterns,
        });
        true
    }

    fn swap(&self, redactor: Redactor) {
        *self
            .inner
            .current
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Arc::new(redactor);
    }
}

/// The process-wide redactor (patterns on) that the log writer uses and the secrets service
/// keeps up to date with every stored value.
pub fn global() -> &'static SharedRedactor {
    static GLOBAL: LazyLock<SharedRedactor> = LazyLock::new(SharedRedactor::default);
    &GLOBAL
}

/// `s` with its `%XX` escapes decoded, when it has any and the result is UTF-8.
fn percent_decoded(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    if !bytes.contains(&b'%') {
        return None;
    }
    let hex = |b: u8| (b as char).to_digit(16);
    let mut out = Vec::with_capacity(bytes.len());
    let mut decoded_any = false;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            out.push((h * 16 + l) as u8);
            decoded_any = true;
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    if !decoded_any {
        return None;
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests;
