//! A measured figure next to its goal: the value, the unit, the scale it was measured at,
//! the reference it was divided by (measured or computed in the same run), and whether the
//! goal holds. A figure whose measurement failed carries the error instead of a value.
//!
//! Edges: plain data in, JSON out; knows nothing of processes or simulators.

use serde_json::{Map, Value, json};

/// What a figure must satisfy.
#[derive(Debug, Clone, Copy)]
pub enum Goal {
    /// `value <= limit`.
    AtMost(f64),
    /// `value == target` (counts).
    Equals(f64),
    /// Reported without a goal.
    None,
}

impl Goal {
    fn text(self) -> Option<String> {
        match self {
            Goal::AtMost(l) => Some(format!("<= {l}")),
            Goal::Equals(t) => Some(format!("== {t}")),
            Goal::None => None,
        }
    }

    fn holds(self, v: f64) -> Option<bool> {
        match self {
            Goal::AtMost(l) => Some(v <= l),
            Goal::Equals(t) => Some(v == t),
            Goal::None => None,
        }
    }
}

/// One figure of the output object.
#[derive(Debug, Clone)]
pub struct Figure {
    /// The value, or why it could not be measured.
    pub value: Result<f64, String>,
    /// Unit of `value` (`ms`, `s`, `MiB`, `ratio`, `requests`).
    pub unit: &'static str,
    /// VMs it was measured at.
    pub vms: usize,
    /// VMs the goal is stated for (the scale); a smaller run only indicates.
    pub goal_vms: usize,
    /// The goal.
    pub goal: Goal,
    /// How it was measured: the reference and the raw numbers.
    pub detail: Value,
}

impl Figure {
    /// A measured figure.
    pub fn new(value: f64, unit: &'static str, vms: usize, goal_vms: usize, goal: Goal) -> Self {
        Self {
            value: Ok(value),
            unit,
            vms,
            goal_vms,
            goal,
            detail: Value::Null,
        }
    }

    /// A figure whose measurement failed.
    pub fn failed(
        error: String,
        unit: &'static str,
        vms: usize,
        goal_vms: usize,
        goal: Goal,
    ) -> Self {
        Self {
            value: Err(error),
            unit,
            vms,
            goal_vms,
            goal,
            detail: Value::Null,
        }
    }

    /// Adds the measurement details.
    pub fn with_detail(mut self, detail: Value) -> Self {
        self.detail = detail;
        self
    }

    /// The figure as JSON: `value`, `unit`, `goal`, `holds` (null without a goal or a
    /// value), `vms`, `at_goal_scale`, `detail` or `error`.
    pub fn to_json(&self) -> Value {
        let mut out = Map::new();
        match &self.value {
            Ok(v) => {
                out.insert("value".into(), json!(round(*v)));
                out.insert("holds".into(), json!(self.goal.holds(*v)));
            }
            Err(e) => {
                out.insert("value".into(), Value::Null);
                out.insert("holds".into(), Value::Null);
                out.insert("error".into(), json!(e));
            }
        }
        out.insert("unit".into(), json!(self.unit));
        out.insert("goal".into(), json!(self.goal.text()));
        out.insert("vms".into(), json!(self.vms));
        out.insert("at_goal_scale".into(), json!(self.vms == self.goal_vms));
        if !self.detail.is_null() {
            out.insert("detail".into(), self.detail.clone());
        }
        Value::Object(out)
    }
}

/// Three decimals: enough for ratios, no float noise in the output.
pub fn round(v: f64) -> f64 {
    (v * 1000.0).round() / 1000.0
}
