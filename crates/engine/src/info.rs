//! An execution's identity: its ARNs, name, role and start, as the context object and
//! the history show them. Both plain executions and map-run children are made from it.

use shoal_asl::identity;
use shoal_expr::Entropy;

/// Who and when: what `$$.Execution` and `$$.StateMachine` show.
#[derive(Debug, Clone)]
pub struct ExecutionInfo {
    pub execution_arn: String,
    pub name: String,
    pub state_machine_arn: String,
    pub state_machine_name: String,
    pub role_arn: String,
    pub start_time_ms: i64,
    pub redrive_count: u32,
}

impl ExecutionInfo {
    /// AWS-shaped ARNs for a local execution.
    pub fn local(
        state_machine: &str,
        name: &str,
        start_time_ms: i64,
        express: bool,
        entropy: &dyn Entropy,
    ) -> ExecutionInfo {
        let sm_arn = identity::state_machine_arn(state_machine);
        let execution_arn = if express {
            identity::express_execution_arn(state_machine, name, &shoal_expr::uuid_v4(entropy))
        } else {
            identity::execution_arn(state_machine, name)
        };
        ExecutionInfo {
            execution_arn,
            name: name.to_string(),
            state_machine_arn: sm_arn,
            state_machine_name: state_machine.to_string(),
            role_arn: identity::default_role_arn(),
            start_time_ms,
            redrive_count: 0,
        }
    }
}
