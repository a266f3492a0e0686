//! Subject and plain-text body of a message: for an approval, the workflow, the step, the
//! step's message, the deadline, and ready-to-paste requests to approve or reject; for a form,
//! its fields and a ready-to-paste request to submit them.

use chrono::{DateTime, Utc};
use scaff_core::store::{MessageKind, OutboxMessage};
use serde_json::{Value as Json, json};

/// The longest workflow name put in a subject line, in characters.
const MAX_SUBJECT_NAME: usize = 120;

/// What a message says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// One line.
    pub subject: String,
    /// Plain text, `\n` line ends.
    pub body: String,
}

/// What the checkpoint recorded about the wait (`data` of the message); every field is
/// optional so an older or partial record still renders.
struct Facts<'a> {
    workflow_id: Option<&'a str>,
    workflow_version: Option<i64>,
    workflow_name: Option<&'a str>,
    message: Option<&'a str>,
    min_approvals: Option<u64>,
    deadline: Option<&'a str>,
    reminder: Option<i64>,
}

impl<'a> Facts<'a> {
    fn of(data: &'a Json) -> Self {
        let text = |k: &str| data.get(k).and_then(Json::as_str).filter(|s| !s.is_empty());
        Facts {
            workflow_id: text("workflow_id"),
            workflow_version: data.get("workflow_version").and_then(Json::as_i64),
            workflow_name: text("workflow_name"),
            message: text("message"),
            min_approvals: data.get("min_approvals").and_then(Json::as_u64),
            deadline: text("deadline"),
            reminder: data.get("reminder").and_then(Json::as_i64),
        }
    }

    /// The name people know the workflow by.
    fn title(&self) -> &str {
        self.workflow_name
            .or(self.workflow_id)
            .unwrap_or("a workflow")
    }
}

/// A time as people read it; text that is no RFC 3339 time is shown as given.
fn human_time(text: &str) -> String {
    DateTime::parse_from_rfc3339(text)
        .map(|t| when(t.with_timezone(&Utc)))
        .unwrap_or_else(|_| text.to_string())
}

fn when(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// Text safe for a header line: controls become spaces, long text is cut.
fn one_line(text: &str, max: usize) -> String {
    let mut out: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(max)
        .collect();
    if text.chars().count() > max {
        out.push('…');
    }
    out
}

/// The resume request body of one decision.
fn decision(token: &str, step_id: &str, approved: bool) -> String {
    json!({
        "resume_token": token,
        "approvals": [{"step_id": step_id, "approved": approved, "comment": ""}],
    })
    .to_string()
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// Renders `msg` for delivery with `token` (the recipient's own resume token, valid until
/// `token_expires`), linking to the API at `public_url`.
pub fn render(
    msg: &OutboxMessage,
    public_url: &str,
    token: &str,
    token_expires: Option<DateTime<Utc>>,
) -> Rendered {
    let m = &msg.message;
    let facts = Facts::of(&m.data);
    let base = public_url.trim_end_matches('/');
    let title = facts.title();
    let name = one_line(title, MAX_SUBJECT_NAME);
    let step = one_line(&m.step_id, MAX_SUBJECT_NAME);
    let reminder = match m.kind {
        MessageKind::ApprovalReminder => Some(facts.reminder.unwrap_or(1)),
        MessageKind::ApprovalRequested => None,
        MessageKind::FormRequested | MessageKind::FormReminder => {
            return render_form(msg, &facts, base, token, token_expires);
        }
    };
    let subject = match reminder {
        Some(n) => format!("Reminder {n}: approval needed for \"{name}\" (step {step})"),
        None => format!("Approval needed for \"{name}\" (step {step})"),
    };

    let resume = format!("{base}/v1/executions/{}/resume", msg.run_id);
    let approve = decision(token, &m.step_id, true);
    let reject = decision(token, &m.step_id, false);
    let mut body = String::new();
    let mut line = |s: &str| {
        body.push_str(s);
        body.push('\n');
    };
    line("Hello,");
    line("");
    match reminder {
        Some(_) => line(&format!(
            "Reminder: \"{title}\" is still waiting for your approval."
        )),
        None => line(&format!("\"{title}\" is waiting for your approval.")),
    }
    line("");
    line(&format!("  Step:       {}", m.step_id));
    if let Some(id) = facts.workflow_id {
        match facts.workflow_version {
            Some(v) => line(&format!("  Workflow:   {id} (version {v})")),
            None => line(&format!("  Workflow:   {id}")),
        }
    }
    line(&format!("  Execution:  {}", msg.run_id));
    if let Some(n) = facts.min_approvals {
        let s = if n == 1 { "" } else { "s" };
        line(&format!("  Needed:     {n} approval{s}"));
    }
    match facts.deadline {
        Some(d) => line(&format!(
            "  Deadline:   {} (the approval times out then)",
            human_time(d)
        )),
        None => line("  Deadline:   none"),
    }
    if let Some(text) = facts.message {
        line("");
        line("Message:");
        for l in text.lines() {
            line(&format!("  {l}"));
        }
    }
    line("");
    line("To approve, POST this JSON body to");
    line(&format!("  {resume}"));
    line("with the header Content-Type: application/json:");
    line("");
    line(&approve);
    line("");
    line("To reject, POST this one instead, with your reason as the comment:");
    line("");
    line(&reject);
    line("");
    line("For example, with curl:");
    line("");
    line(&format!(
        "curl -X POST {} -H 'Content-Type: application/json' -d {}",
        shell_quote(&resume),
        shell_quote(&approve)
    ));
    line("");
    let validity = match token_expires {
        Some(t) => format!(", until {}", when(t)),
        None => String::new(),
    };
    line(&format!(
        "The token is yours alone ({}) and decides this approval once{validity}.",
        m.recipient
    ));
    line(&format!(
        "The execution: GET {base}/v1/executions/{}",
        msg.run_id
    ));
    Rendered { subject, body }
}

/// A form message: its fields and the request that submits them.
fn render_form(
    msg: &OutboxMessage,
    facts: &Facts<'_>,
    base: &str,
    token: &str,
    token_expires: Option<DateTime<Utc>>,
) -> Rendered {
    let m = &msg.message;
    let title = facts.title();
    let name = one_line(title, MAX_SUBJECT_NAME);
    let step = one_line(&m.step_id, MAX_SUBJECT_NAME);
    let reminder = (m.kind == MessageKind::FormReminder).then(|| facts.reminder.unwrap_or(1));
    let subject = match reminder {
        Some(n) => format!("Reminder {n}: input needed for \"{name}\" (step {step})"),
        None => format!("Input needed for \"{name}\" (step {step})"),
    };
    let fields: Vec<(String, String, bool)> = m
        .data
        .get("fields")
        .and_then(Json::as_array)
        .map(|list| {
            list.iter()
                .map(|f| {
                    let text = |k: &str| f.get(k).and_then(Json::as_str).unwrap_or("").to_string();
                    let required = f.get("required").and_then(Json::as_bool).unwrap_or(false);
                    (text("key"), text("type"), required)
                })
                .collect()
        })
        .unwrap_or_default();
    let inputs: serde_json::Map<String, Json> = fields
        .iter()
        .map(|(k, t, _)| {
            let example = match t.as_str() {
                "number" | "integer" => json!(0),
                "boolean" => json!(false),
                _ => json!(""),
            };
            (k.clone(), example)
        })
        .collect();
    let submit = json!({"resume_token": token, "inputs": inputs}).to_string();
    let resume = format!("{base}/v1/executions/{}/resume", msg.run_id);
    let mut body = String::new();
    let mut line = |s: &str| {
        body.push_str(s);
        body.push('\n');
    };
    line("Hello,");
    line("");
    match reminder {
        Some(_) => line(&format!(
            "Reminder: \"{title}\" is still waiting for input."
        )),
        None => line(&format!("\"{title}\" is waiting for input.")),
    }
    line("");
    line(&format!("  Step:       {}", m.step_id));
    line(&format!("  Execution:  {}", msg.run_id));
    match facts.deadline {
        Some(d) => line(&format!(
            "  Deadline:   {} (the form times out then)",
            human_time(d)
        )),
        None => line("  Deadline:   none"),
    }
    line("");
    line("Fields:");
    for (k, t, required) in &fields {
        let req = if *required { ", required" } else { "" };
        line(&format!("  {k} ({t}{req})"));
    }
    line("");
    line("To submit, fill in the values and POST this JSON body to");
    line(&format!("  {resume}"));
    line("with the header Content-Type: application/json:");
    line("");
    line(&submit);
    line("");
    line("For example, with curl:");
    line("");
    line(&format!(
        "curl -X POST {} -H 'Content-Type: application/json' -d {}",
        shell_quote(&resume),
        shell_quote(&submit)
    ));
    line("");
    if let Some(t) = token_expires {
        line(&format!(
            "The token submits this form once, until {}.",
            when(t)
        ));
    }
    line(&format!(
        "The execution: GET {base}/v1/executions/{}",
        msg.run_id
    ));
    Rendered { subject, body }
}

#[cfg(test)]
mod tests {
    use super::*;
    use scaff_core::store::{MessageStatus, NewMessage};
    use uuid::Uuid;

    fn message(kind: MessageKind, data: Json) -> OutboxMessage {
        let at = Utc::now();
        OutboxMessage {
            message: NewMessage {
                id: Uuid::now_v7(),
                kind,
                recipient: "ann@example.com".into(),
                step_id: "check".into(),
                wait_version: 3,
                data,
            },
            run_id: Uuid::now_v7(),
            status: MessageStatus::Pending,
            attempts: 0,
            last_error: None,
            subject: None,
            body: None,
            created_at: at,
            next_attempt_at: at,
            sent_at: None,
        }
    }

    fn data() -> Json {
        json!({
            "workflow_id": "review",
            "workflow_version": 2,
            "workflow_name": "Review\nflow",
            "message": "Publish 'Rust tips'?\nIt has 3 sections.",
            "min_approvals": 2,
            "deadline": "2026-11-25T10:00:00Z",
            "reminder": 0,
        })
    }

    /// The JSON lines of a body.
    fn json_lines(body: &str) -> Vec<Json> {
        body.lines()
            .filter(|l| l.starts_with('{'))
            .map(|l| serde_json::from_str(l).expect("json line"))
            .collect()
    }

    #[test]
    fn a_request_names_the_step_message_deadline_and_both_decisions() {
        let msg = message(MessageKind::ApprovalRequested, data());
        let r = render(&msg, "https://scaff.example.com/", "tok.en", None);
        assert_eq!(
            r.subject, "Approval needed for \"Review flow\" (step check)",
            "one line"
        );
        assert!(r.body.contains("  Step:       check"), "{}", r.body);
        assert!(r.body.contains("  Workflow:   review (version 2)"));
        assert!(r.body.contains("  Needed:     2 approvals"));
        assert!(r.body.contains("2026-11-25 10:00:00 UTC"));
        assert!(
            r.body
                .contains("  Publish 'Rust tips'?\n  It has 3 sections.\n")
        );
        let resume = format!(
            "https://scaff.example.com/v1/executions/{}/resume",
            msg.run_id
        );
        assert!(r.body.contains(&format!("  {resume}\n")), "{}", r.body);
        let decisions = json_lines(&r.body);
        assert_eq!(
            decisions,
            [
                json!({"resume_token": "tok.en", "approvals": [{"step_id": "check", "approved": true, "comment": ""}]}),
                json!({"resume_token": "tok.en", "approvals": [{"step_id": "check", "approved": false, "comment": ""}]}),
            ]
        );
        assert!(r.body.contains(&format!("curl -X POST '{resume}'")));
    }

    #[test]
    fn a_reminder_says_so_and_partial_data_still_renders() {
        let mut d = data();
        d["reminder"] = json!(2);
        let r = render(
            &message(MessageKind::ApprovalReminder, d),
            "http://x",
            "t",
            None,
        );
        assert!(r.subject.starts_with("Reminder 2: "), "{}", r.subject);
        let bare = render(
            &message(MessageKind::ApprovalRequested, json!({})),
            "http://x",
            "t",
            Some(DateTime::from_timestamp(0, 0).expect("epoch")),
        );
        assert_eq!(
            bare.subject,
            "Approval needed for \"a workflow\" (step check)"
        );
        assert!(bare.body.contains("Deadline:   none"));
        assert!(bare.body.contains("until 1970-01-01 00:00:00 UTC"));
    }

    #[test]
    fn shell_quoting_survives_quotes() {
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
    }
}
