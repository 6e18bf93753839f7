//! Prompt templates (CM-2): chat messages whose contents are minijinja templates. A version is
//! checked when it is created (shape, sizes, syntax) and rendered per request in a sandbox: no
//! file system, no includes, strict about undefined variables, and a bounded amount of work.

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most messages in one prompt version.
pub const MAX_MESSAGES: usize = 64;
/// Largest template of one message, and largest rendered message.
pub const MAX_CONTENT: usize = 32 * 1024;
/// Bounds the work of one render (loops cannot run away); output is bounded apart, as it is
/// written (`"x" * 100000000` costs little fuel).
const FUEL: u64 = 50_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptMessage {
    pub role: String,
    pub content: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    #[error("{0}")]
    Invalid(String),
    #[error("message {index}: the template does not parse: {detail}")]
    Syntax { index: usize, detail: String },
    #[error("missing variable `{0}`")]
    Missing(String),
    #[error("message {index}: the template failed: {detail}")]
    Render { index: usize, detail: String },
}

fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    env
}

/// Checks a version's messages; returns the variables its templates use, sorted.
pub fn check(messages: &[PromptMessage]) -> Result<Vec<String>, PromptError> {
    if messages.is_empty() || messages.len() > MAX_MESSAGES {
        return Err(PromptError::Invalid(format!(
            "`messages` holds 1 to {MAX_MESSAGES} messages"
        )));
    }
    let env = environment();
    let mut variables = BTreeSet::new();
    for (index, message) in messages.iter().enumerate() {
        if !matches!(
            message.role.as_str(),
            "system" | "developer" | "user" | "assistant"
        ) {
            return Err(PromptError::Invalid(format!(
                "message {index}: `role` is system, developer, user or assistant"
            )));
        }
        if message.content.len() > MAX_CONTENT {
            return Err(PromptError::Invalid(format!(
                "message {index}: the template is over {MAX_CONTENT} bytes"
            )));
        }
        if message.content.contains('\0') {
            return Err(PromptError::Invalid(format!(
                "message {index}: the template holds a NUL character"
            )));
        }
        let template =
            env.template_from_str(&message.content)
                .map_err(|e| PromptError::Syntax {
                    index,
                    detail: e.to_string(),
                })?;
        // Global functions (`range`, `dict`, ...) are the environment's, not the caller's.
        variables.extend(
            template
                .undeclared_variables(false)
                .into_iter()
                .filter(|name| !env.globals().any(|(global, _)| global == name)),
        );
    }
    Ok(variables.into_iter().collect())
}

/// Renders a version with the request's variables; a variable it uses and was not given is
/// `Missing`, named.
pub fn render(
    messages: &[PromptMessage],
    variables: &Map<String, Value>,
) -> Result<Vec<PromptMessage>, PromptError> {
    let needed = check(messages)?;
    if let Some(missing) = needed.iter().find(|v| !variables.contains_key(*v)) {
        return Err(PromptError::Missing(missing.clone()));
    }
    let env = environment();
    let context = minijinja::Value::from_serialize(variables);
    messages
        .iter()
        .enumerate()
        .map(|(index, message)| {
            let failed = |detail: String| PromptError::Render { index, detail };
            let template = env
                .template_from_str(&message.content)
                .map_err(|e| failed(e.to_string()))?;
            let mut out = Bounded::default();
            match template.render_captured_to(&context, &mut out) {
                Ok(_) => {}
                Err(_) if out.over => {
                    return Err(failed(format!(
                        "the rendered message is over {MAX_CONTENT} bytes"
                    )));
                }
                Err(e) => return Err(failed(e.to_string())),
            }
            let content = String::from_utf8(out.bytes).map_err(|e| failed(e.to_string()))?;
            Ok(PromptMessage {
                role: message.role.clone(),
                content,
            })
        })
        .collect()
}

/// A buffer that refuses to grow past `MAX_CONTENT`: a render stops there, not at the end of
/// memory.
#[derive(Default)]
struct Bounded {
    bytes: Vec<u8>,
    over: bool,
}

impl std::io::Write for Bounded {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > MAX_CONTENT {
            self.over = true;
            return Err(std::io::Error::other("over the size limit"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(template: &str) -> Vec<PromptMessage> {
        vec![PromptMessage {
            role: "system".into(),
            content: template.into(),
        }]
    }

    fn vars(value: Value) -> Map<String, Value> {
        match value {
            Value::Object(map) => map,
            _ => Map::new(),
        }
    }

    #[test]
    fn cm_2_templates_render_with_their_variables_and_name_a_missing_one() {
        let version = messages("You help {{ customer }} with {{ product | upper }}.");
        assert_eq!(check(&version).unwrap(), vec!["customer", "product"]);
        let rendered = render(
            &version,
            &vars(json!({"customer": "Ana", "product": "maps"})),
        )
        .unwrap();
        assert_eq!(rendered[0].content, "You help Ana with MAPS.");
        assert_eq!(
            render(&version, &vars(json!({"customer": "Ana"}))),
            Err(PromptError::Missing("product".into()))
        );
    }

    #[test]
    fn cm_2_bad_templates_and_runaway_loops_are_refused() {
        assert!(matches!(
            check(&messages("{% if %}")),
            Err(PromptError::Syntax { .. })
        ));
        assert!(matches!(check(&[]), Err(PromptError::Invalid(_))));
        let runaway = messages(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        );
        assert!(render(&runaway, &Map::new()).is_err());
        // Output is bounded as it is written, however cheap it was to ask for.
        let huge = messages("{% for i in range(100) %}{{ 'x' * 100000000 }}{% endfor %}");
        let result = render(&huge, &Map::new());
        assert!(
            matches!(result, Err(PromptError::Render { .. })),
            "{result:?}"
        );
        assert!(matches!(
            check(&messages("a\0b")),
            Err(PromptError::Invalid(_))
        ));
        // No file system: includes have nowhere to look.
        assert!(render(&messages("{% include '/etc/passwd' %}"), &Map::new()).is_err());
    }
}
