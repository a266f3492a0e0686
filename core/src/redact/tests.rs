use std::time::{Duration, Instant};

use serde_json::json;

use super::*;

fn patterns() -> Redactor {
    Redactor::default()
}

/// Asserts that `input` redacts to `expected` (patterns only).
#[track_caller]
fn redacts(input: &str, expected: &str) {
    assert_eq!(patterns().text(input), expected, "input: {input:?}");
}

/// Asserts that `input` is left exactly as it is (and borrowed).
#[track_caller]
fn keeps(input: &str) {
    let out = patterns().text(input);
    assert_eq!(out, input);
    assert!(matches!(out, Cow::Borrowed(_)), "{input:?} was copied");
}

// --- secret values ----------------------------------------------------------------------------

#[test]
fn secret_values_are_replaced_raw_and_encoded() {
    let r = Redactor::new(["p@ss word/é", "hunter22"], Patterns::Off);
    assert_eq!(r.secret_count(), 2);
    assert_eq!(
        r.text("u?k=p%40ss%20word%2F%C3%A9&x=hunter22 p@ss word/é p%40ss+word%2F%C3%A9"),
        "u?k=[REDACTED]&x=[REDACTED] [REDACTED] [REDACTED]"
    );
    assert_eq!(r.text("p%40ss%20word%2f%c3%a9"), REDACTED, "lower-case hex");
}

#[test]
fn secret_values_are_found_json_and_debug_escaped() {
    let value = "a\"quote\\and\nline";
    let r = Redactor::new([value], Patterns::Off);
    let json_line = serde_json::to_string(&json!({ "message": value })).expect("json");
    let redacted = r.text(&json_line);
    assert_eq!(redacted, r#"{"message":"[REDACTED]"}"#);
    assert_eq!(r.text(&format!("v={value:?}")), "v=\"[REDACTED]\"");
}

#[test]
fn a_secret_containing_another_is_replaced_whole_and_overlaps_merge() {
    let r = Redactor::new(["abcdef", "xabc", "cdefgh"], Patterns::Off);
    assert_eq!(r.text("1 xabcdefgh 2"), "1 [REDACTED] 2");
    assert_eq!(r.text("abcdef"), REDACTED);
    assert_eq!(r.text("secret: xabc."), "secret: [REDACTED].");
}

#[test]
fn short_secrets_are_replaced_only_where_they_stand_alone() {
    let r = Redactor::new(["abc", "", "x"], Patterns::Off);
    assert_eq!(r.secret_count(), 2, "the empty value is ignored");
    assert_eq!(r.text("abc"), REDACTED);
    assert_eq!(r.text("k=abc&y=1"), "k=[REDACTED]&y=1");
    assert_eq!(r.text("xabcx labcoat"), "xabcx labcoat");
    assert_eq!(r.text("a x b"), "a [REDACTED] b");
    assert_eq!(r.text("max index"), "max index");
}

#[test]
fn without_secrets_or_matches_text_is_borrowed() {
    let r = Redactor::new(["hunter22"], Patterns::Off);
    assert!(matches!(
        r.text("nothing to see, mail a@b.io"),
        Cow::Borrowed(_)
    ));
    assert!(matches!(
        Redactor::new(Vec::<String>::new(), Patterns::Off).text("x"),
        Cow::Borrowed(_)
    ));
}

#[test]
fn secrets_come_first_then_patterns() {
    let r = Redactor::new(["s3cr3t-value"], Patterns::On);
    assert_eq!(
        r.text("Authorization: Bearer s3cr3t-value for ann@example.com"),
        "Authorization: Bearer [REDACTED] for [REDACTED:email]"
    );
    assert_eq!(
        r.text(r#"{"token":"s3cr3t-value"}"#),
        r#"{"token":"[REDACTED]"}"#
    );
    assert_eq!(
        r.text(r#"{"authorization":"Bearer s3cr3t-value"}"#),
        r#"{"authorization":"Bearer [REDACTED]"}"#
    );
    let off = r.with_patterns(Patterns::Off);
    assert_eq!(off.patterns(), Patterns::Off);
    assert_eq!(
        off.text("s3cr3t-value ann@example.com"),
        "[REDACTED] ann@example.com"
    );
}

#[test]
fn debug_shows_no_values() {
    let r = Redactor::new(["hunter22"], Patterns::On);
    let shown = format!("{r:?} {:?}", SharedRedactor::new(r.clone()));
    assert!(!shown.contains("hunter22"), "{shown}");
    assert!(shown.contains("secrets: 1"), "{shown}");
}

// --- bearer tokens ------------------------------------------------------------------------------

#[test]
fn bearer_tokens_are_redacted() {
    redacts(
        "Authorization: Bearer eyJhbGciOi.J9-x_y~z+/a==",
        "Authorization: Bearer [REDACTED:bearer]",
    );
    redacts(
        "sent with bearer abc123 to the API",
        "sent with bearer [REDACTED:bearer] to the API",
    );
    redacts(
        r#"headers={"authorization": "Bearer abc.def"}"#,
        r#"headers={"authorization": "Bearer [REDACTED:bearer]"}"#,
    );
    redacts(
        "proxy-authorization=Basic dXNlcjpwYXNz",
        "proxy-authorization=Basic [REDACTED:key]",
    );
    redacts("Authorization: opaque123", "Authorization: [REDACTED:key]");
}

#[test]
fn bearer_near_misses_are_kept() {
    keeps("expected a Bearer token in the header");
    keeps("the bearer of bad news, Bearer authentication");
    keeps("notbearer abc123");
}

// --- API-key-like assignments --------------------------------------------------------------------

#[test]
fn key_like_assignments_keep_the_key_and_lose_the_value() {
    redacts("api_key=abc123&page=2", "api_key=[REDACTED:key]&page=2");
    redacts("apikey: abc123", "apikey: [REDACTED:key]");
    redacts("X-Api-Key: abc123", "X-Api-Key: [REDACTED:key]");
    redacts(
        "token=abc secret=def",
        "token=[REDACTED:key] secret=[REDACTED:key]",
    );
    redacts("password='hunter 2' ok", "password='[REDACTED:key]' ok");
    redacts("DB_PASSWORD=\"pa ss\"", "DB_PASSWORD=\"[REDACTED:key]\"");
    redacts(
        "config {\"api_key\": \"abc\", \"n\": 1}",
        "config {\"api_key\": \"[REDACTED:key]\", \"n\": 1}",
    );
    redacts(
        r#"{"message":"sent token=\"abc\" ok"}"#,
        r#"{"message":"sent token=\"[REDACTED:key]\" ok"}"#,
    );
    redacts(
        r#"{\"client_secret\":\"abc\"}"#,
        r#"{\"client_secret\":\"[REDACTED:key]\"}"#,
    );
    redacts(
        "Config { api_key: Some(\"abc\") }",
        "Config { api_key: Some(\"[REDACTED:key]\") }",
    );
    redacts(
        "postgres://scaff:s3cret@db:5432/x",
        "postgres://scaff:[REDACTED:key]@db:5432/x",
    );
}

#[test]
fn a_bare_value_after_a_json_key_stays_json() {
    let out = patterns().text(r#"{"password":12345,"n":1}"#).into_owned();
    assert_eq!(out, r#"{"password":"[REDACTED:key]","n":1}"#);
    serde_json::from_str::<Value>(&out).expect("still JSON");
}

#[test]
fn coloured_text_log_fields_are_redacted() {
    redacts(
        "\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0m\"abc\" \x1b[3mn\x1b[0m\x1b[2m=\x1b[0m1",
        "\x1b[3mtoken\x1b[0m\x1b[2m=\x1b[0m\"[REDACTED:key]\" \x1b[3mn\x1b[0m\x1b[2m=\x1b[0m1",
    );
}

#[test]
fn key_like_near_misses_are_kept() {
    keeps("tokens_prompt=120 tokens_output=40 max_tokens: 512");
    keeps("secret_name=api token count 3");
    keeps("password=\"\" token=true secret: null");
    keeps("the password is set");
    keeps("token=[REDACTED]");
}

// --- key shapes ------------------------------------------------------------------------------

#[test]
fn well_known_key_shapes_are_redacted() {
    redacts(
        "using sk-proj-abcdefghijklmnopqrstuvwx now",
        "using [REDACTED:key] now",
    );
    redacts(
        "gh: ghp_abcdefghijklmnopqrstuvwxyz0123456789",
        "gh: [REDACTED:key]",
    );
    redacts("aws AKIAIOSFODNN7EXAMPLE.", "aws [REDACTED:key].");
    redacts("slack xoxb-1234567890-abcdefghij", "slack [REDACTED:key]");
    redacts(
        "key scaff_abcdefgh_abcdefghijklmnopqrstuvwxyz234567 made",
        "key [REDACTED:key] made",
    );
}

#[test]
fn key_shape_near_misses_are_kept() {
    keeps("task-abcdefghijklmnopqrstuvwxyz");
    keeps("sk-short");
    keeps("scaff_runs_waiting scaff_http_requests_total");
    keeps("AKIAIOSFODNN7EXAMPLEX and AKIA1234");
}

// --- e-mail addresses ----------------------------------------------------------------------------

#[test]
fn email_addresses_are_redacted() {
    redacts(
        "mail john.doe+x@example.co.uk now",
        "mail [REDACTED:email] now",
    );
    redacts(
        r#"{"to":"ANN@Example.COM"}."#,
        r#"{"to":"[REDACTED:email]"}."#,
    );
}

#[test]
fn email_near_misses_are_kept() {
    keeps("user@localhost and @handle and a@b");
    keeps("price 5 @ 3");
}

// --- phone numbers ----------------------------------------------------------------------------

#[test]
fn phone_numbers_are_redacted() {
    for phone in [
        "+14155552671",
        "+1 (555) 123-4567",
        "+44 20 7946 0958",
        "(555) 123-4567",
        "555-123-4567",
        "555.123.4567",
    ] {
        redacts(&format!("call {phone}."), "call [REDACTED:phone].");
    }
    redacts(
        "call 555-123-4567 1234 times",
        "call [REDACTED:phone] 1234 times",
    );
    redacts("ref 1234 555-123-4567 ok", "ref 1234 [REDACTED:phone] ok");
    redacts("+1 415 555 2671 2026 11 24", "[REDACTED:phone] 2026 11 24");
    redacts("+44 20 7946 0958 2026-11-24", "[REDACTED:phone] 2026-11-24");
}

#[test]
fn dates_times_ids_and_versions_are_not_phone_numbers() {
    keeps("on 2026-11-24 at 10:30:00, 2026-11-24T10:30:00.123456+01:00");
    keeps("run 0193a1f2-7c4e-7d2a-9b1e-3f4a5b6c7d8e and 12345678-1234-1234-1234-123456789012");
    keeps("version 1.2.3, 10.0.12, host 192.168.100.10:8080, id 12345678, port 5432");
    keeps("ORD-2026-000123 +1234 a+14155552671 v555-123-4567");
    keeps("offset +0100 and 555-1234");
}

// --- SSNs -------------------------------------------------------------------------------------

#[test]
fn ssns_are_redacted() {
    redacts("ssn 123-45-6789.", "ssn [REDACTED:ssn].");
    redacts("\"ssn\":\"078-05-1120\"", "\"ssn\":\"[REDACTED:ssn]\"");
}

#[test]
fn impossible_ssns_are_kept() {
    keeps("000-12-3456 666-12-3456 912-12-3456 123-00-4567 123-45-0000");
    keeps("x123-45-6789 123-45-6789-1");
}

// --- card numbers -------------------------------------------------------------------------------

#[test]
fn card_numbers_passing_luhn_are_redacted() {
    for card in [
        "4111 1111 1111 1111",
        "4111-1111-1111-1111",
        "4111111111111111",
        "5555555555554444",
        "3782 822463 10005",
        "378282246310005",
        "6011 1111 1111 1117",
        "4222222222222",
    ] {
        redacts(&format!("card: {card}."), "card: [REDACTED:card].");
    }
    redacts(
        "paid 4111 1111 1111 1111 2026 and 5555555555554444",
        "paid [REDACTED:card] 2026 and [REDACTED:card]",
    );
    redacts("qty 2 4111 1111 1111 1111", "qty 2 [REDACTED:card]");
    redacts(
        "on 2026-11-24 4111111111111111",
        "on 2026-11-24 [REDACTED:card]",
    );
}

#[test]
fn order_ids_and_other_numbers_are_kept() {
    // Fails Luhn.
    keeps("order 4111111111111112 shipped");
    // Epoch milliseconds and nanoseconds start with 1: no card does.
    keeps("at 1732406400000 and 1732406400000000000");
    // Glued to something else: a float, an id, a longer number.
    keeps("score 0.4111111111111111 ord_4111111111111111 /runs/4111111111111111");
    keeps("41111111111111110000 and 4111111111111111x");
    keeps("0000000000000000 2222222222222222");
    // Groups that no card is printed in.
    keeps("2026-11-24 1234 5678 90");
}

// --- JWTs and mixed text ------------------------------------------------------------------------

#[test]
fn jwts_are_kept_whole_or_redacted_whole() {
    let jwt =
        "eyJhbGciOiJIUzI1NiJ9.eyJydW5faWQiOiIxMjMifQ.dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    keeps(&format!("resume with {jwt} please"));
    redacts(
        &format!("resume_token={jwt}"),
        "resume_token=[REDACTED:key]",
    );
    redacts(
        &format!("Authorization: Bearer {jwt}"),
        "Authorization: Bearer [REDACTED:bearer]",
    );
}

#[test]
fn everything_at_once() {
    redacts(
        "user ann@example.com (+14155552671, ssn 123-45-6789) paid 4111 1111 1111 1111 \
         with api_key=abc; order 4111111111111112, run 2026-11-24T10:00:00Z",
        "user [REDACTED:email] ([REDACTED:phone], ssn [REDACTED:ssn]) paid [REDACTED:card] \
         with api_key=[REDACTED:key]; order 4111111111111112, run 2026-11-24T10:00:00Z",
    );
}

#[test]
fn large_inputs_finish_quickly() {
    let chunk = "user ann@example.com paid 4111 1111 1111 1111 token=abc id 123456789 \
                 2026-11-24T10:00:00Z aaaa@@@ 0.4111111111111111 +1 555 ";
    let mut text = String::new();
    while text.len() < 100 * 1024 {
        text.push_str(chunk);
    }
    let digits = "1 ".repeat(50 * 1024);
    let glued = format!("x{}", "4".repeat(100 * 1024));
    let r = Redactor::new(["hunter22", "abc"], Patterns::On);
    let started = Instant::now();
    let out = r.text(&text);
    assert!(!out.contains("ann@example.com"));
    assert!(!out.contains("4111 1111"));
    assert_eq!(r.text(&digits), digits);
    assert_eq!(r.text(&glued), glued);
    for adversarial in [
        "Bearer of ".repeat(10_000),
        "xsk-".repeat(25_000),
        "a+1".repeat(30_000),
        "4111 ".repeat(20_000),
        "123-45-6789-".repeat(8_000),
        "token=".repeat(15_000),
        "a@".repeat(50_000),
        "(555) ".repeat(15_000),
    ] {
        let _ = r.text(&adversarial);
    }
    let elapsed = started.elapsed();
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
}

// --- JSON -------------------------------------------------------------------------------------

#[test]
fn json_strings_keys_and_sensitive_values_are_redacted() {
    let r = Redactor::new(["s3cr3t-value"], Patterns::On);
    let mut v = json!({
        "s3cr3t-value": ["x s3cr3t-value x", 1, null],
        "contact": {"email": "ann@example.com", "phone": "+14155552671"},
        "X-Api-Key": "abc",
        "password": 12345,
        "client_secret": {"v": 1},
        "github_token": null,
        "secret": "",
        "tokens_prompt": 12,
        "max_tokens": 512,
        "card": 4111111111111111u64,
        "order": 4111111111111112u64,
        "ok": true,
    });
    r.json(&mut v);
    assert_eq!(
        v,
        json!({
            "[REDACTED]": ["x [REDACTED] x", 1, null],
            "contact": {"email": "[REDACTED:email]", "phone": "[REDACTED:phone]"},
            "X-Api-Key": "[REDACTED:key]",
            "password": "[REDACTED:key]",
            "client_secret": "[REDACTED:key]",
            "github_token": null,
            "secret": "",
            "tokens_prompt": 12,
            "max_tokens": 512,
            "card": "[REDACTED:card]",
            "order": 4111111111111112u64,
            "ok": true,
        })
    );
    let keys: Vec<&String> = v.as_object().expect("object").keys().collect();
    assert_eq!(keys[0], "[REDACTED]", "order is kept");
}

#[test]
fn json_without_patterns_only_replaces_secret_values() {
    let r = Redactor::new(["abc"], Patterns::Off);
    assert_eq!(
        r.json_owned(json!({"abc": ["xabcx", "abc", 1], "password": "p", "e": "a@b.io"})),
        json!({"[REDACTED]": ["xabcx", "[REDACTED]", 1], "password": "p", "e": "a@b.io"})
    );
}

#[test]
fn sensitive_keys() {
    for key in [
        "password",
        "PASSWD",
        "secret",
        "token",
        "api_key",
        "API-KEY",
        "apikey",
        "authorization",
        "access_key",
        "private-key",
        "client_secret",
        "aws_secret_access_key",
        "refresh_token",
    ] {
        assert!(is_sensitive_key(key), "{key}");
    }
    for key in [
        "tokens_prompt",
        "max_tokens",
        "secret_name",
        "keys",
        "name",
        "passport",
    ] {
        assert!(!is_sensitive_key(key), "{key}");
    }
}

#[test]
fn luhn_checks() {
    let digits = |s: &str| s.bytes().map(|b| b - b'0').collect::<Vec<u8>>();
    assert!(luhn(&digits("4111111111111111")));
    assert!(luhn(&digits("79927398713")));
    assert!(!luhn(&digits("4111111111111112")));
    assert!(
        !is_card_number(&digits("1111111111111117")),
        "issuer digit 1"
    );
}

// --- sharing ----------------------------------------------------------------------------------

#[test]
fn shared_redactors_swap_whole() {
    let shared = SharedRedactor::default();
    let before = shared.current();
    assert_eq!(before.patterns(), Patterns::On);
    shared.set_secrets(["alpha-1", "beta-22"]);
    assert_eq!(
        shared.current().text("alpha-1 beta-22"),
        "[REDACTED] [REDACTED]"
    );
    assert_eq!(
        before.text("alpha-1"),
        "alpha-1",
        "a snapshot stays as it was"
    );
    assert!(shared.add_secrets(["gamma-333"]));
    assert!(!shared.add_secrets(["gamma-333", "alpha-1", ""]));
    assert_eq!(shared.current().secret_count(), 3);
    let clone = shared.clone();
    clone.set_secrets(["delta-4444"]);
    assert_eq!(
        shared.current().text("alpha-1 delta-4444"),
        "alpha-1 [REDACTED]"
    );
    shared.set(Redactor::new(["x-secret"], Patterns::Off));
    assert_eq!(clone.current().text("x-secret a@b.io"), "[REDACTED] a@b.io");
}

#[test]
fn the_global_redactor_has_patterns_on() {
    let g = global();
    assert_eq!(g.current().patterns(), Patterns::On);
    g.add_secrets(["redact-global-test-value"]);
    assert_eq!(
        g.current().text("v=redact-global-test-value"),
        "v=[REDACTED]"
    );
}

#[test]
fn percent_encoded_personal_data_in_urls_is_found() {
    let r = Redactor::default();
    let url = "http://h/hook?card=4111%201111%201111%201111&contact=jane.doe%40customer.example";
    let out = r.text(url);
    assert!(!out.contains("jane.doe"), "{out}");
    assert!(!out.contains("4111"), "{out}");
    assert!(
        out.contains("[REDACTED:email]") && out.contains("[REDACTED:card]"),
        "{out}"
    );
    // Encoded text with nothing to hide is kept as it was (not decoded).
    let plain = "http://h/search?q=rust%20actors&page=2";
    assert_eq!(r.text(plain), plain);
    // Broken escapes are left alone.
    assert_eq!(r.text("100%"), "100%");
    assert_eq!(r.text("%zz%4"), "%zz%4");
}
