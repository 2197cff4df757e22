//! Coverage of a state machine across the cases that ran it: which states were
//! entered, which transitions, Choice rules (and Defaults) and catchers were taken,
//! and which retriers retried. The engine reports each step it takes
//! ([`shoal_engine::Trace`]), so nothing is guessed from the history.

use crate::suite::walk;
use serde_json::{json, Value};
use shoal_asl::{Kind, StateMachine, Transition};
use shoal_engine::Trace;
use std::collections::BTreeSet;

/// What can be covered in one state machine.
#[derive(Debug, Clone, Default)]
pub struct Model {
    states: Vec<String>,
    transitions: Vec<(String, String)>,
    /// (Choice state, rule index or `None` for Default)
    choice_rules: Vec<(String, Option<usize>)>,
    catchers: Vec<(String, usize)>,
    retriers: Vec<(String, usize)>,
}

impl Model {
    pub fn of(m: &StateMachine) -> Model {
        let mut model = Model::default();
        let mut transitions = BTreeSet::new();
        walk(m, &mut |_, st| {
            model.states.push(st.name.clone());
            let mut to = Vec::new();
            if let Transition::Next(n) = &st.transition {
                to.push(n.clone());
            }
            if let Kind::Choice { choices, default } = &st.kind {
                for (i, c) in choices.iter().enumerate() {
                    model.choice_rules.push((st.name.clone(), Some(i)));
                    to.push(c.next.clone());
                }
                if let Some(d) = default {
                    model.choice_rules.push((st.name.clone(), None));
                    to.push(d.clone());
                }
            }
            if let Some(h) = st.kind.handling() {
                for (i, c) in h.catch.iter().enumerate() {
                    model.catchers.push((st.name.clone(), i));
                    to.push(c.next.clone());
                }
                for i in 0..h.retry.len() {
                    model.retriers.push((st.name.clone(), i));
                }
            }
            for t in to {
                if transitions.insert((st.name.clone(), t.clone())) {
                    model.transitions.push((st.name.clone(), t));
                }
            }
        });
        model
    }
}

/// What the cases took, accumulated.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    states: BTreeSet<String>,
    transitions: BTreeSet<(String, String)>,
    choice_rules: BTreeSet<(String, Option<usize>)>,
    catchers: BTreeSet<(String, usize)>,
    retriers: BTreeSet<(String, usize)>,
}

impl Taken {
    pub fn add(&mut self, trace: &[Trace]) {
        for t in trace {
            match t {
                Trace::Entered(s) => {
                    self.states.insert(s.clone());
                }
                Trace::Transition { from, to } => {
                    self.transitions.insert((from.clone(), to.clone()));
                }
                Trace::ChoiceRule { state, rule } => {
                    self.choice_rules.insert((state.clone(), *rule));
                }
                Trace::Caught { state, catcher } => {
                    self.catchers.insert((state.clone(), *catcher));
                }
                Trace::Retried { state, retrier } => {
                    self.retriers.insert((state.clone(), *retrier));
                }
            }
        }
    }
}

/// Covered and missed, for one kind of thing.
#[derive(Debug, Clone, PartialEq)]
pub struct Tally {
    pub total: usize,
    pub covered: usize,
    pub missed: Vec<String>,
}

impl Tally {
    fn of<T: Ord>(all: &[T], taken: &BTreeSet<T>, name: impl Fn(&T) -> String) -> Tally {
        let missed: Vec<String> = all
            .iter()
            .filter(|x| !taken.contains(x))
            .map(name)
            .collect();
        Tally {
            total: all.len(),
            covered: all.len() - missed.len(),
            missed,
        }
    }

    pub fn percent(&self) -> f64 {
        if self.total == 0 {
            100.0
        } else {
            self.covered as f64 * 100.0 / self.total as f64
        }
    }

    fn json(&self) -> Value {
        json!({"total": self.total, "covered": self.covered, "percent": (self.percent() * 10.0).round() / 10.0, "missed": self.missed})
    }

    fn line(&self, what: &str) -> String {
        format!(
            "{what} {}/{} ({:.0}%)",
            self.covered,
            self.total,
            self.percent()
        )
    }
}

/// The coverage of one state machine.
#[derive(Debug, Clone)]
pub struct Report {
    pub machine: String,
    pub definition: String,
    pub states: Tally,
    pub transitions: Tally,
    pub choice_rules: Tally,
    pub catchers: Tally,
    pub retriers: Tally,
}

impl Report {
    pub fn new(machine: &str, definition: &str, model: &Model, taken: &Taken) -> Report {
        let rule = |(s, r): &(String, Option<usize>)| match r {
            Some(i) => format!("{s} Choices[{i}]"),
            None => format!("{s} Default"),
        };
        Report {
            machine: machine.to_string(),
            definition: definition.to_string(),
            states: Tally::of(&model.states, &taken.states, Clone::clone),
            transitions: Tally::of(&model.transitions, &taken.transitions, |(a, b)| {
                format!("{a} -> {b}")
            }),
            choice_rules: Tally::of(&model.choice_rules, &taken.choice_rules, rule),
            catchers: Tally::of(&model.catchers, &taken.catchers, |(s, i)| {
                format!("{s} Catch[{i}]")
            }),
            retriers: Tally::of(&model.retriers, &taken.retriers, |(s, i)| {
                format!("{s} Retry[{i}]")
            }),
        }
    }

    pub fn json(&self) -> Value {
        json!({
            "stateMachine": self.machine,
            "definition": self.definition,
            "states": self.states.json(),
            "transitions": self.transitions.json(),
            "choiceRules": self.choice_rules.json(),
            "catchers": self.catchers.json(),
            "retriers": self.retriers.json(),
        })
    }

    /// The summary line for stdout.
    pub fn summary(&self) -> String {
        format!(
            "coverage of {}: {}, {}, {}, {}, {}",
            self.machine,
            self.states.line("states"),
            self.transitions.line("transitions"),
            self.choice_rules.line("choice rules"),
            self.catchers.line("catchers"),
            self.retriers.line("retriers"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_model_counts_nested_states_rules_catchers_and_retriers() {
        let def = serde_json::json!({"StartAt": "C", "States": {
            "C": {"Type": "Choice", "Choices": [{"Variable": "$.x", "IsPresent": true, "Next": "P"}], "Default": "T"},
            "T": {"Type": "Task", "Resource": "arn:aws:states:::lambda:invoke", "Parameters": {"FunctionName": "f"},
                  "Retry": [{"ErrorEquals": ["States.ALL"]}], "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "P"}], "Next": "P"},
            "P": {"Type": "Parallel", "Branches": [{"StartAt": "B", "States": {"B": {"Type": "Pass", "End": true}}}], "End": true}}});
        let m = shoal_asl::parse(&def.to_string()).machine.unwrap();
        let model = Model::of(&m);
        let mut taken = Taken::default();
        taken.add(&[
            Trace::Entered("C".into()),
            Trace::ChoiceRule {
                state: "C".into(),
                rule: None,
            },
            Trace::Transition {
                from: "C".into(),
                to: "T".into(),
            },
            Trace::Entered("T".into()),
        ]);
        let r = Report::new("m", "m.json", &model, &taken);
        assert_eq!((r.states.covered, r.states.total), (2, 4));
        assert_eq!(r.states.missed, ["P", "B"]);
        // T -> P by Next and by Catch is one transition.
        assert_eq!(r.transitions.total, 3);
        assert_eq!(r.choice_rules.missed, ["C Choices[0]"]);
        assert_eq!(r.catchers.missed, ["T Catch[0]"]);
        assert_eq!(r.retriers.missed, ["T Retry[0]"]);
    }
}
