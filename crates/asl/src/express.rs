//! EXPRESS state machines run for at most five minutes and keep no history, so AWS
//! rejects the integration patterns that wait (`.sync`, `.sync:2`, `.waitForTaskToken`)
//! in them when the machine is created or validated with `type: EXPRESS`. A definition
//! alone does not say its type, so this check runs where the type is known.

use crate::{Diagnostic, Pattern, Resource};
use serde_json::Value;

const SCHEMA: &str = "SCHEMA_VALIDATION_FAILED";

/// The diagnostics an EXPRESS machine of this definition gets, with AWS's wording, for
/// every Task (in branches and processors too) whose Resource waits.
pub fn express_diagnostics(definition: &Value) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    walk(definition, "", &mut out);
    out
}

fn walk(machine: &Value, ptr: &str, out: &mut Vec<Diagnostic>) {
    let Some(states) = machine.get("States").and_then(Value::as_object) else {
        return;
    };
    for (name, st) in states {
        let sp = format!("{ptr}/States/{}", escape(name));
        if st.get("Type").and_then(Value::as_str) == Some("Task") {
            let pattern = st
                .get("Resource")
                .and_then(Value::as_str)
                .and_then(|r| Resource::parse(r).ok())
                .map(|r| r.pattern());
            // AWS's recorded messages: the '.waitForTaskToken' one ends in a space.
            let message = match pattern {
                Some(Pattern::Sync | Pattern::Sync2) => {
                    Some("Express state machine does not support '.sync' service integration")
                }
                Some(Pattern::WaitForTaskToken) => Some(
                    "Express state machine does not support '.waitForTaskToken' service integration ",
                ),
                _ => None,
            };
            if let Some(message) = message {
                out.push(Diagnostic {
                    pointer: format!("{sp}/Resource"),
                    code: SCHEMA,
                    message: message.to_string(),
                });
            }
        }
        if let Some(branches) = st.get("Branches").and_then(Value::as_array) {
            for (i, b) in branches.iter().enumerate() {
                walk(b, &format!("{sp}/Branches/{i}"), out);
            }
        }
        for key in ["ItemProcessor", "Iterator"] {
            if let Some(p) = st.get(key) {
                walk(p, &format!("{sp}/{key}"), out);
            }
        }
    }
}

/// A JSON pointer token (RFC 6901).
fn escape(s: &str) -> String {
    s.replace('~', "~0").replace('/', "~1")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn waiting_integrations_are_found_wherever_they_are() {
        let def = json!({"StartAt": "A", "States": {
            "A": {"Type": "Task", "Resource": "arn:aws:states:::states:startExecution.sync", "Next": "P"},
            "P": {"Type": "Parallel", "End": true, "Branches": [{"StartAt": "W", "States": {
                "W": {"Type": "Task", "Resource": "arn:aws:states:::sqs:sendMessage.waitForTaskToken", "End": true}}}]},
            "L": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "End": true}
        }});
        let d = express_diagnostics(&def);
        let got: Vec<(&str, &str)> = d
            .iter()
            .map(|d| (d.pointer.as_str(), d.message.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("/States/A/Resource", "Express state machine does not support '.sync' service integration"),
                ("/States/P/Branches/0/States/W/Resource", "Express state machine does not support '.waitForTaskToken' service integration "),
            ]
        );
    }
}
