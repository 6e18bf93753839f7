//! Prompt templates (CM-2): chat messages whose contents are minijinja templates. A version is
//! checked when it is created (shape, sizes, syntax, and what it does: `scan`) and rendered per
//! request in a sandbox: no file system, no includes, no functions, strict about undefined
//! variables, and bounded work and memory (AV-4): instructions are counted (fuel), filters
//! charge a budget (`filters`), output is bounded as it is written, and the variables are
//! bounded in size.

mod filters;
mod scan;

use std::collections::BTreeSet;

use minijinja::{Environment, UndefinedBehavior};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Most messages in one prompt version.
pub const MAX_MESSAGES: usize = 64;
/// Largest template of one message, and largest rendered message.
pub const MAX_CONTENT: usize = 32 * 1024;
/// Bounds the instructions of one version's render, all its messages together (loops cannot
/// run away, and the costliest instruction compares or searches `MAX_VARIABLES`).
const FUEL: u64 = 20_000;
/// Largest `variables` of one render, as JSON: what an instruction compares or searches.
pub const MAX_VARIABLES: usize = 256 * 1024;

/// One chat message of a prompt version, whose content is a template until rendered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptMessage {
    /// `system`, `developer`, `user` or `assistant`; [`check`] refuses any other.
    pub role: String,
    /// The template, at most [`MAX_CONTENT`] bytes; once rendered, the text it produced.
    pub content: String,
}

/// Why a prompt version is refused, or a render of it failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptError {
    /// The version or its variables break a rule of shape or size; the text says which.
    #[error("{0}")]
    Invalid(String),
    /// A template does not parse.
    #[error("message {index}: the template does not parse: {detail}")]
    Syntax {
        /// The message's position in the version, from 0.
        index: usize,
        /// The template engine's account of the error.
        detail: String,
    },
    /// A template uses what the sandbox refuses, such as a growing operator or a macro (AV-4).
    #[error("message {index}: {detail}")]
    Refused {
        /// The message's position in the version, from 0.
        index: usize,
        /// What the template does that a prompt may not.
        detail: String,
    },
    /// A variable the templates use and the request did not give, by name.
    #[error("missing variable `{0}`")]
    Missing(String),
    /// A template failed while rendering: out of fuel, over a bound, or given the wrong type.
    #[error("message {index}: the template failed: {detail}")]
    Render {
        /// The message's position in the version, from 0.
        index: usize,
        /// The template engine's account of the failure.
        detail: String,
    },
}

fn environment() -> Environment<'static> {
    // Empty: no global functions (`range`, `namespace`, ...), only the bounded filters.
    let mut env = Environment::empty();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_fuel(Some(FUEL));
    filters::install(&mut env);
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
        if let Some(detail) = scan::growing_operator(&message.content) {
            return Err(PromptError::Refused { index, detail });
        }
        let template =
            env.template_from_str(&message.content)
                .map_err(|e| PromptError::Syntax {
                    index,
                    detail: e.to_string(),
                })?;
        if let Some(detail) = scan::refusal(&template) {
            return Err(PromptError::Refused { index, detail });
        }
        variables.extend(template.undeclared_variables(false));
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
    if json_size(variables) > MAX_VARIABLES {
        return Err(PromptError::Invalid(format!(
            "`variables` is over {MAX_VARIABLES} bytes"
        )));
    }
    filters::refill();
    let mut env = environment();
    let context = minijinja::Value::from_serialize(variables);
    // The fuel is the version's, shared by its messages in turn.
    let mut fuel = FUEL;
    let mut rendered = Vec::with_capacity(messages.len());
    for (index, message) in messages.iter().enumerate() {
        let failed = |detail: String| PromptError::Render { index, detail };
        env.set_fuel(Some(fuel));
        let template = env
            .template_from_str(&message.content)
            .map_err(|e| failed(e.to_string()))?;
        let mut out = Bounded::default();
        match template.render_captured_to(&context, &mut out) {
            Ok(captured) => {
                let used = captured.state().fuel_levels().map_or(0, |(used, _)| used);
                fuel = fuel.saturating_sub(used).max(1);
            }
            Err(_) if out.over => {
                return Err(failed(format!(
                    "the rendered message is over {MAX_CONTENT} bytes"
                )));
            }
            Err(e) => return Err(failed(e.to_string())),
        }
        let content = String::from_utf8(out.bytes).map_err(|e| failed(e.to_string()))?;
        rendered.push(PromptMessage {
            role: message.role.clone(),
            content,
        });
    }
    Ok(rendered)
}

/// The size of `value` written as JSON, counted without writing it.
fn json_size(value: &Map<String, Value>) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    // Writing a JSON value into a counter cannot fail.
    let _ = serde_json::to_writer(&mut count, value);
    count.0
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
        let runaway =
            messages("{% for i in items %}{% for j in items %}{{ j }}{% endfor %}{% endfor %}");
        let items = vars(json!({"items": vec![0; 1000]}));
        let result = render(&runaway, &items);
        assert!(
            matches!(&result, Err(PromptError::Render { detail, .. }) if detail.contains("fuel")),
            "{result:?}"
        );
        // Output is bounded as it is written.
        let huge = messages("{% for i in items %}{{ s }}{% endfor %}");
        let result = render(
            &huge,
            &vars(json!({"items": vec![0; 100], "s": "x".repeat(100_000)})),
        );
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

    /// Templates that each built a value of hundreds of megabytes to gigabytes with a handful
    /// of instructions; each is refused when it is created, with what it did.
    #[test]
    fn av_4_templates_that_grow_values_without_bound_are_refused_when_created() {
        for (template, what) in [
            (
                "{% set a = 'x' * 100000000 %}{% set b = a ~ a ~ a ~ a ~ a %}{{ b | length }}",
                "`*`",
            ),
            (
                "{% set a = 'xxxxxxxx' %}{% for i in [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,\
                 18,19,20,21,22,23,24,25,26,27,28,29,30] %}{% set a = a ~ a %}{% endfor %}{{ a }}",
                "`~`",
            ),
            ("{{ (s + s + s + s) | length }}", "`+`"),
            ("{{ loop.index + 1 }}", "`+`"),
            ("{% set ns = namespace(s='x') %}", "calling `namespace`"),
            (
                "{% for i in range(100000) %}{{ i }}{% endfor %}",
                "calling `range`",
            ),
            ("{% set big %}{{ s }}{{ s }}{% endset %}", "captured block"),
            ("{% filter upper %}{{ s }}{% endfilter %}", "captured block"),
            (
                "{% macro m(x) %}{{ x }}{{ x }}{% endmacro %}{{ m(s) }}",
                "macro",
            ),
            ("{{ s | center(100000000) }}", "the filter `center`"),
            ("{{ s | indent(100000) }}", "the filter `indent`"),
            ("{{ s[0:] }}", "a slice"),
            ("{{ s.replace('a', 'b') }}", "calling `replace`"),
            ("{{ s ** 2 }}", "`**`"),
            // Lists of variables share them: nested in `set`s, 2^16 x 30 KB from 600 bytes.
            (
                "{% set a = [s, s] %}{% set a = [a, a] %}{% if a in '' %}{% endif %}",
                "a list or map of variables",
            ),
            ("{% set m = {'k': s} %}", "a list or map of variables"),
            (
                "{% autoescape true %}{{ s }}{% endautoescape %}",
                "`{% autoescape %}`",
            ),
            // The parser recurses once per unary operator: a long chain is a stack overflow.
            (&*format!("{{{{ {}1 }}}}", "-".repeat(5000)), "tokens"),
            (&*format!("{{{{ {}x }}}}", "not ".repeat(3000)), "tokens"),
        ] {
            match check(&messages(template)) {
                Err(PromptError::Refused { detail, .. }) => {
                    assert!(detail.contains(what), "{template}: {detail}");
                }
                other => panic!("{template} was not refused: {other:?}"),
            }
        }
    }

    #[test]
    fn av_4_ordinary_templates_still_render() {
        let version = messages(
            "{% for item in items %}{{ loop.index }}. {{ item.name | title }}\
             {% if item.note is defined %} ({{ item.note | trim }}){% endif %}\n{% endfor %}\
             Tags: {{ tags | join(', ') }}; {{ tags | length }} {{ data | tojson }} \
             {{ name | default('friend') | replace('a', 'o') }}",
        );
        let rendered = render(
            &version,
            &vars(json!({
                "items": [{"name": "ana"}, {"name": "bo", "note": " ok "}],
                "tags": ["a", "b"], "data": {"k": 1}, "name": "Sam"})),
        )
        .unwrap();
        assert_eq!(
            rendered[0].content,
            "1. Ana\n2. Bo (ok)\nTags: a, b; 2 {\"k\":1} Som"
        );
    }

    /// The filters that are allowed grow values too; each charges the render's budget before
    /// it allocates, so a chain of them stops at the budget, not at the end of memory.
    #[test]
    fn av_4_filter_chains_stop_at_the_budget() {
        let sep = "y".repeat(10_000);
        for template in [
            // 10 KB separators between the characters of a 100 KB variable: 1 GB.
            format!("{{% set a = s | join('{sep}') %}}{{{{ a | length }}}}"),
            // Every character replaced by 10 KB: 1 GB.
            format!("{{{{ s | replace('x', '{sep}') | length }}}}"),
            // A string joined with itself as the separator: its length squared, each time.
            format!(
                "{{% set a = s %}}{}{{{{ a | length }}}}",
                "{% set a = a | join(a) %}".repeat(3)
            ),
        ] {
            let version = messages(&template);
            check(&version).unwrap();
            let result = render(&version, &vars(json!({"s": "x".repeat(100_000)})));
            assert!(
                matches!(&result, Err(PromptError::Render { detail, .. }) if detail.contains("bytes")),
                "{result:?}"
            );
        }
        let huge = vars(json!({"s": "x".repeat(MAX_VARIABLES)}));
        assert!(matches!(
            render(&messages("{{ s | length }}"), &huge),
            Err(PromptError::Invalid(_))
        ));
    }
}
