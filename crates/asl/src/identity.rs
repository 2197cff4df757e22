//! Who and where a local shoal is, as AWS names it: one partition, region and account,
//! the ARN forms built from them, and AWS's timestamp text. Every crate that writes an
//! ARN or a date takes it from here, so they cannot drift apart.

pub const PARTITION: &str = "aws";
pub const REGION: &str = "us-east-1";
pub const ACCOUNT: &str = "123456789012";

/// `arn:aws:states:us-east-1:123456789012:stateMachine:<name>`.
pub fn state_machine_arn(name: &str) -> String {
    format!("arn:{PARTITION}:states:{REGION}:{ACCOUNT}:stateMachine:{name}")
}

/// A STANDARD execution's ARN.
pub fn execution_arn(state_machine: &str, name: &str) -> String {
    format!("arn:{PARTITION}:states:{REGION}:{ACCOUNT}:execution:{state_machine}:{name}")
}

/// An EXPRESS execution's ARN: AWS adds a UUID after the name.
pub fn express_execution_arn(state_machine: &str, name: &str, uuid: &str) -> String {
    format!("arn:{PARTITION}:states:{REGION}:{ACCOUNT}:express:{state_machine}:{name}:{uuid}")
}

/// `arn:aws:states:us-east-1:123456789012:activity:<name>`.
pub fn activity_arn(name: &str) -> String {
    format!("arn:{PARTITION}:states:{REGION}:{ACCOUNT}:activity:{name}")
}

/// `arn:aws:lambda:us-east-1:123456789012:function:<name>`.
pub fn function_arn(name: &str) -> String {
    format!("arn:{PARTITION}:lambda:{REGION}:{ACCOUNT}:function:{name}")
}

/// The role executions run as when a definition names none.
pub fn default_role_arn() -> String {
    format!("arn:{PARTITION}:iam::{ACCOUNT}:role/shoal-execution")
}

/// Milliseconds since the epoch as AWS's ISO-8601 text (`2026-01-02T03:04:05.678Z`).
pub fn iso_time(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%S%.3fZ")
        .to_string()
}

/// The largest payload AWS passes between states, and the largest task result: 256 KiB.
/// Milliseconds since the epoch of an ISO-8601 time as [`iso_time`] writes it.
pub fn iso_ms(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.timestamp_millis())
}

pub const PAYLOAD_LIMIT: usize = 262_144;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_have_aws_forms() {
        assert_eq!(
            execution_arn("sm", "e1"),
            "arn:aws:states:us-east-1:123456789012:execution:sm:e1"
        );
        assert_eq!(
            express_execution_arn("sm", "e1", "u"),
            "arn:aws:states:us-east-1:123456789012:express:sm:e1:u"
        );
        assert_eq!(iso_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
    }
}

/// A `.waitForTaskToken` or activity task's token: which execution's which task waits,
/// and 128 random bits, so that a token cannot be guessed from another. It is made
/// from the execution's injected entropy, so a replayed execution waits on the same
/// token after a restart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TaskToken {
    pub execution_arn: String,
    /// The engine's id for the task's effect.
    pub effect: u64,
    pub secret: u128,
}

impl TaskToken {
    pub fn encode(&self) -> String {
        use base64::Engine;
        let raw = format!(
            "{:032x}{:016x}{}",
            self.secret, self.effect, self.execution_arn
        );
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw)
    }

    /// `None` when the text is no token shoal made (AWS's `InvalidToken`).
    pub fn decode(text: &str) -> Option<TaskToken> {
        use base64::Engine;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text)
            .ok()?;
        let raw = String::from_utf8(raw).ok()?;
        if raw.len() < 48 || !raw.is_char_boundary(48) {
            return None;
        }
        let secret = u128::from_str_radix(&raw[..32], 16).ok()?;
        let effect = u64::from_str_radix(&raw[32..48], 16).ok()?;
        let execution_arn = raw[48..].to_string();
        execution_arn.starts_with("arn:").then_some(TaskToken {
            execution_arn,
            effect,
            secret,
        })
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    #[test]
    fn a_token_round_trips_and_garbage_is_refused() {
        let t = TaskToken {
            execution_arn: execution_arn("m", "e"),
            effect: 7,
            secret: 0xdead_beef_u128 << 64 | 42,
        };
        assert_eq!(TaskToken::decode(&t.encode()), Some(t));
        for bad in ["", "x", "not a token!", "YWJj", &"A".repeat(200)] {
            assert_eq!(TaskToken::decode(bad), None, "{bad}");
        }
    }
}
