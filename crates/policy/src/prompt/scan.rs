//! What a prompt template may do (AV-4), read from its tokens and its compiled instructions:
//! substitution, `if`, `for` over what it was given, `set`, and the bounded filters. Refused
//! are the operators that build a value larger than their inputs without a bound (`*` repeats
//! a string, `~` and `+` join two, a list of variables shares them, and a loop or a chain of
//! `set`s doubles it each time),
//! captured blocks (their output is kept in memory, not written out), slices, macros, calls
//! and recursion. The match names every instruction, so one that a newer minijinja adds does
//! not compile until it is read here.

use minijinja::Template;
use minijinja::machinery::{Instruction, Token, WhitespaceConfig, get_compiled_template, tokenize};
use minijinja::syntax::SyntaxConfig;

use super::filters;

/// The first operator of `source` that builds a larger value than its inputs. Read from its
/// tokens, before it is compiled: compiling folds constants, and `'x' * 100000000` would be a
/// 100 MB string by then.
/// Also read here: the length of each tag (`{{ ... }}`, `{% ... %}`), since the parser and
/// the compiler recurse once per unary operator or nesting level and a long enough chain would
/// end the process on a stack overflow.
pub(super) fn growing_operator(source: &str) -> Option<String> {
    let tokens = tokenize(source, false, SyntaxConfig, WhitespaceConfig::default());
    let mut in_tag = 0usize;
    for token in tokens {
        // A source that does not tokenise is refused by the parser, with its reason.
        let Ok((token, span)) = token else {
            return None;
        };
        match token {
            Token::VariableStart | Token::BlockStart => in_tag = 0,
            Token::VariableEnd | Token::BlockEnd => {}
            _ => in_tag += 1,
        }
        if in_tag > MAX_TAG_TOKENS {
            return Some(format!(
                "line {}: a tag of more than {MAX_TAG_TOKENS} tokens is not allowed in a prompt",
                span.start_line
            ));
        }
        if matches!(token, Token::Plus | Token::Mul | Token::Pow | Token::Tilde) {
            return Some(format!(
                "line {}: {token} is not allowed in a prompt",
                span.start_line
            ));
        }
    }
    None
}

/// Tokens in one tag: a long expression, with room to spare.
const MAX_TAG_TOKENS: usize = 200;

/// The first thing `template` does that a prompt may not, with its line.
pub(super) fn refusal(template: &Template<'_, '_>) -> Option<String> {
    let compiled = get_compiled_template(template);
    if !compiled.blocks.is_empty() {
        return Some("blocks are not allowed in a prompt".to_owned());
    }
    let code = &compiled.instructions;
    for at in 0.. {
        let Some(instruction) = code.get(at) else {
            break;
        };
        if let Some(what) = refused(instruction) {
            let line = code.get_line(at).unwrap_or(0);
            return Some(format!("line {line}: {what} is not allowed in a prompt"));
        }
    }
    None
}

fn refused(instruction: &Instruction<'_>) -> Option<String> {
    use Instruction as I;
    let what = match instruction {
        I::EmitRaw(_)
        | I::StoreLocal(_)
        | I::Lookup(_)
        | I::GetAttr(_)
        | I::GetItem
        | I::LoadConst(_)
        | I::BuildKwargs(_)
        | I::MergeKwargs(_)
        | I::UnpackList(_)
        | I::UnpackLists(_)
        | I::Sub
        | I::Div
        | I::IntDiv
        | I::Rem
        | I::Neg
        | I::Eq
        | I::Ne
        | I::Gt
        | I::Gte
        | I::Lt
        | I::Lte
        | I::Not
        | I::In
        | I::CompareAndPreserve(_)
        | I::Emit
        | I::PushLoop(_)
        | I::PushWith
        | I::Iterate(_)
        | I::PushDidNotIterate
        | I::PopFrame
        | I::PopLoopFrame
        | I::Jump(_)
        | I::JumpIfFalse(_)
        | I::JumpIfFalseOrPop(_)
        | I::JumpIfTrueOrPop(_)
        | I::DupTop
        | I::DiscardTop
        | I::Swap => return None,
        // A literal of constants is one constant; one that holds variables shares them, and
        // nesting it in `set`s doubles a value at each step without copying anything.
        I::BuildList(_) | I::BuildMap(_) => "a list or map of variables".to_owned(),
        // Escaping writes a value whole before the output's bound sees it.
        I::PushAutoEscape | I::PopAutoEscape => "`{% autoescape %}`".to_owned(),
        I::Add => "`+`".to_owned(),
        I::Mul => "`*`".to_owned(),
        I::Pow => "`**`".to_owned(),
        I::StringConcat => "`~`".to_owned(),
        I::Slice => "a slice".to_owned(),
        I::SetAttr(_) => "setting an attribute".to_owned(),
        I::ApplyFilter(name, ..) if filters::NAMES.contains(name) => return None,
        I::ApplyFilter(name, ..) => format!("the filter `{name}`"),
        I::PerformTest(name, ..) if filters::TESTS.contains(name) => return None,
        I::PerformTest(name, ..) => format!("the test `{name}`"),
        I::BeginCapture(_) | I::EndCapture => {
            "a captured block (`{% set %}...{% endset %}`, `{% filter %}`, `{% call %}`)".to_owned()
        }
        I::CallFunction(name, _) | I::CallMethod(name, _) => format!("calling `{name}`"),
        I::CallObject(_) => "calling a value".to_owned(),
        I::FastRecurse => "a recursive loop".to_owned(),
        I::BuildMacro(..) | I::Return | I::IsUndefined | I::Enclose(_) | I::GetClosure => {
            "a macro".to_owned()
        }
        I::FastSuper | I::CallBlock(_) | I::LoadBlocks | I::Include(_) | I::ExportLocals => {
            "another template".to_owned()
        }
    };
    Some(what)
}
