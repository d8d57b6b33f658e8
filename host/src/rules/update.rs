//! `rules test --update`: rewrites a fixture's `expect` with what the module answers now, after
//! a deliberate change. The parts a fixture checked are refreshed (desired, needs, changes,
//! error, and the children parts when the run produced them); a fixture that checked nothing
//! of the VM gets `needs` and `changes`. Only the `expect` value of the file is replaced, as
//! text: the guest, the record and the context stay byte for byte as their author wrote them
//! (re-serializing the whole file would reorder a guest's config keys).

use guest_default::model::{
    Desired, Expect, ExpectedDesired, FixtureOutcome, RuleError, SkipExpect,
};

/// The `expect` a fixture should have for `outcome`, keeping the shape of `old`.
pub fn updated_expect(old: &Expect, outcome: &FixtureOutcome) -> Expect {
    let mut new = Expect {
        desired_children: old.desired_children.clone(),
        children: old.children.clone(),
        ..Expect::default()
    };
    if let Some(co) = &outcome.children {
        if old.desired_children.is_some()
            && let Some(Ok(d)) = &co.desired
        {
            new.desired_children = Some(d.clone());
        }
        if old.children.is_some()
            && let Some(Ok(c)) = &co.changes
        {
            new.children = Some(c.clone());
        }
    }
    let first_error: Option<&RuleError> = [
        outcome.desired.as_ref().and_then(|r| r.as_ref().err()),
        outcome.current.as_ref().and_then(|r| r.as_ref().err()),
        outcome.changes.as_ref().and_then(|r| r.as_ref().err()),
    ]
    .into_iter()
    .flatten()
    .next()
    .or_else(|| {
        outcome.children.as_ref().and_then(|co| {
            [
                co.desired.as_ref().and_then(|r| r.as_ref().err()),
                co.current.as_ref().and_then(|r| r.as_ref().err()),
                co.changes.as_ref().and_then(|r| r.as_ref().err()),
            ]
            .into_iter()
            .flatten()
            .next()
        })
    });
    if let Some(e) = first_error {
        new.error = Some(e.code.clone());
        return new;
    }
    match &outcome.desired {
        Some(Ok(Desired::Skip(reason))) => {
            new.desired = Some(ExpectedDesired::Skip(SkipExpect {
                skip: reason.clone(),
            }));
        }
        Some(Ok(Desired::Vm(d))) => {
            let checked_vm = old.desired.is_some() || old.needs.is_some() || old.changes.is_some();
            let was_vm = matches!(old.desired, Some(ExpectedDesired::Vm(_)));
            if was_vm {
                new.desired = Some(ExpectedDesired::Vm(d.vm.clone()));
            }
            if old.needs.is_some() || !checked_vm || !was_vm && old.changes.is_none() {
                new.needs = Some(d.needs.clone());
            }
            if (old.changes.is_some() || !checked_vm || !was_vm && old.needs.is_none())
                && let Some(Ok(c)) = &outcome.changes
            {
                new.changes = Some(c.clone());
            }
        }
        _ => {}
    }
    new
}

/// Where the top-level `"expect"` value of a fixture's JSON text starts and ends (byte
/// offsets), or `None` when the text has none (or is not an object).
pub fn expect_span(text: &str) -> Option<(usize, usize)> {
    let bytes = text.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    // The start of a value of "expect" at depth 1, once its key and colon were read.
    let mut key_at_depth1: Option<String> = None;
    let mut value_start: Option<usize> = None;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                if depth == 1 && value_start.is_none() {
                    // A key if a colon follows.
                    let rest = text[i + 1..].trim_start();
                    if rest.starts_with(':') {
                        key_at_depth1 = Some(text[start..i].to_owned());
                    }
                }
            }
            b':' if depth == 1 && key_at_depth1.as_deref() == Some("expect") => {
                let skip = text[i + 1..].len() - text[i + 1..].trim_start().len();
                value_start = Some(i + 1 + skip);
                key_at_depth1 = None;
            }
            b'{' | b'[' => depth += 1,
            b'}' | b']' => {
                if depth == 1
                    && let Some(s) = value_start
                {
                    return Some((s, text[..i].trim_end().len()));
                }
                depth = depth.saturating_sub(1);
                if depth == 1
                    && let Some(s) = value_start
                {
                    // The value was an object or array: it ends here.
                    return Some((s, i + 1));
                }
            }
            b',' if depth == 1 => {
                if let Some(s) = value_start {
                    return Some((s, text[..i].trim_end().len()));
                }
                key_at_depth1 = None;
            }
            _ => {}
        }
        i += 1;
    }
    None
}

/// `expect` as JSON without the parts it does not check (`null`s).
pub fn expect_json(expect: &Expect) -> serde_json::Value {
    let mut v = serde_json::to_value(expect).unwrap_or_default();
    if let serde_json::Value::Object(m) = &mut v {
        m.retain(|_, x| !x.is_null());
    }
    v
}

/// `text` with its `expect` value replaced by `expect` (pretty, indented as a top-level
/// value of a two-space-indented file); `None` when the text has no `expect`.
pub fn replace_expect(text: &str, expect: &Expect) -> Option<String> {
    let (start, end) = expect_span(text)?;
    let pretty = serde_json::to_string_pretty(&expect_json(expect)).ok()?;
    let indented = pretty.replace('\n', "\n  ");
    Some(format!("{}{indented}{}", &text[..start], &text[end..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use guest_default::model::{DesiredVm, FieldChange, JsonText, Vm};

    const FIXTURE: &str = r#"{
  "description": "a \"quoted\" {brace}",
  "guest": {"cluster": "pve", "config": {"b": "1", "a": "2"}},
  "expect": {
    "changes": []
  },
  "context": {}
}
"#;

    #[test]
    fn the_expect_value_is_found_and_replaced_alone() {
        let (s, e) = expect_span(FIXTURE).expect("found");
        assert_eq!(&FIXTURE[s..e], "{\n    \"changes\": []\n  }");
        let expect = Expect {
            error: Some("bad-setting".into()),
            ..Expect::default()
        };
        let out = replace_expect(FIXTURE, &expect).unwrap();
        assert!(
            out.contains("\"expect\": {\n    \"error\": \"bad-setting\"\n  },"),
            "{out}"
        );
        assert!(
            out.contains(r#"{"b": "1", "a": "2"}"#),
            "config order kept: {out}"
        );
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["expect"]["error"], "bad-setting");
    }

    #[test]
    fn an_expect_last_in_the_object_is_found() {
        let text = "{\"a\": [1, {\"expect\": 2}], \"expect\": {\"x\": [1]}}";
        let (s, e) = expect_span(text).unwrap();
        assert_eq!(&text[s..e], "{\"x\": [1]}");
        assert_eq!(expect_span("{\"a\": 1}"), None);
    }

    fn vm_outcome(changes: Vec<FieldChange>) -> FixtureOutcome {
        FixtureOutcome {
            desired: Some(Ok(Desired::Vm(DesiredVm {
                vm: Vm::default(),
                needs: Vec::new(),
            }))),
            current: None,
            changes: Some(Ok(changes)),
            children: None,
        }
    }

    #[test]
    fn checked_parts_are_refreshed_and_an_error_replaces_them() {
        let change = FieldChange {
            field: "memory".into(),
            old: JsonText("null".into()),
            new: JsonText("2048".into()),
        };
        let old = Expect {
            changes: Some(Vec::new()),
            ..Expect::default()
        };
        let new = updated_expect(&old, &vm_outcome(vec![change.clone()]));
        assert_eq!(new.changes, Some(vec![change]));
        assert_eq!(
            new.needs, None,
            "needs were not checked, and stay unchecked"
        );
        let failed = FixtureOutcome {
            desired: Some(Err(RuleError::new("bad-setting", "x"))),
            ..FixtureOutcome::default()
        };
        let new = updated_expect(&old, &failed);
        assert_eq!(new.error.as_deref(), Some("bad-setting"));
        assert_eq!(new.changes, None);
    }
}
