//! The filters a prompt template may use (AV-4). Each charges what it reads and writes to the
//! render's budget before it allocates, so that no chain of filters can grow a value past it:
//! minijinja's own `join`, `replace` or `upper` build their whole result first.

use std::borrow::Cow;
use std::cell::Cell;

use minijinja::value::Value;
use minijinja::{Environment, Error, ErrorKind};

/// Bytes the filters of one render may read and write in all.
pub(super) const BUDGET: usize = 4 * 1024 * 1024;

/// The filters, by name; [`super::scan`] refuses any other at creation.
pub(super) const NAMES: &[&str] = &[
    "upper",
    "lower",
    "title",
    "capitalize",
    "trim",
    "length",
    "count",
    "default",
    "d",
    "first",
    "last",
    "join",
    "replace",
    "tojson",
    "int",
    "float",
    "round",
    "abs",
];

/// The tests, by name.
pub(super) const TESTS: &[&str] = &[
    "defined",
    "undefined",
    "none",
    "string",
    "number",
    "sequence",
    "mapping",
    "true",
    "false",
    "odd",
    "even",
];

thread_local! {
    static LEFT: Cell<usize> = const { Cell::new(0) };
}

/// Gives the renders that follow on this thread a whole budget.
pub(super) fn refill() {
    LEFT.with(|left| left.set(BUDGET));
}

/// Takes `bytes` from the budget, or fails the render.
fn charge(bytes: usize) -> Result<(), Error> {
    LEFT.with(|left| match left.get().checked_sub(bytes) {
        Some(rest) => {
            left.set(rest);
            Ok(())
        }
        None => {
            left.set(0);
            Err(Error::new(
                ErrorKind::InvalidOperation,
                format!("the template's filters went over their {BUDGET} bytes"),
            ))
        }
    })
}

pub(super) fn install(env: &mut Environment<'static>) {
    // Case mapping can turn one byte into three (`ß` into `SS` is the mild case). Each takes
    // the value itself: minijinja's own conversion to text would write a whole list out
    // before the budget saw it.
    env.add_filter("upper", |v: &Value| {
        let s = text(v)?;
        charge(s.len() * 3).map(|()| s.to_uppercase())
    });
    env.add_filter("lower", |v: &Value| {
        let s = text(v)?;
        charge(s.len() * 3).map(|()| s.to_lowercase())
    });
    env.add_filter("title", |v: &Value| {
        let s = text(v)?;
        charge(s.len() * 3).map(|()| minijinja::filters::title(s))
    });
    env.add_filter("capitalize", |v: &Value| {
        let s = text(v)?;
        charge(s.len() * 3).map(|()| {
            let mut chars = s.chars();
            chars.next().map_or_else(String::new, |first| {
                first
                    .to_uppercase()
                    .chain(chars.flat_map(char::to_lowercase))
                    .collect()
            })
        })
    });
    env.add_filter("trim", |v: &Value| {
        let s = text(v)?;
        charge(s.len()).map(|()| s.trim().to_owned())
    });
    let length = |v: &Value| {
        charge(v.as_str().map_or(0, str::len))?;
        minijinja::filters::length(v)
    };
    env.add_filter("length", length);
    env.add_filter("count", length);
    let default = |v: Value, other: Option<Value>| {
        if v.is_undefined() || v.is_none() {
            other.unwrap_or_else(|| Value::from(""))
        } else {
            v
        }
    };
    env.add_filter("default", default);
    env.add_filter("d", default);
    env.add_filter("first", minijinja::filters::first);
    env.add_filter("last", minijinja::filters::last);
    env.add_filter("join", join);
    env.add_filter("replace", replace);
    env.add_filter("tojson", tojson);
    env.add_filter("int", minijinja::filters::int);
    env.add_filter("float", minijinja::filters::float);
    env.add_filter("round", minijinja::filters::round);
    env.add_filter("abs", minijinja::filters::abs);
    env.add_test("defined", minijinja::tests::is_defined);
    env.add_test("undefined", minijinja::tests::is_undefined);
    env.add_test("none", minijinja::tests::is_none);
    env.add_test("string", minijinja::tests::is_string);
    env.add_test("number", minijinja::tests::is_number);
    env.add_test("sequence", minijinja::tests::is_sequence);
    env.add_test("mapping", minijinja::tests::is_mapping);
    env.add_test("true", minijinja::tests::is_true);
    env.add_test("false", minijinja::tests::is_false);
    env.add_test("odd", minijinja::tests::is_odd);
    env.add_test("even", minijinja::tests::is_even);
}

/// `items | join(sep)`, charged piece by piece as it grows.
fn join(items: &Value, separator: Option<&Value>) -> Result<String, Error> {
    let separator = match separator {
        Some(v) => text(v)?,
        None => Cow::Borrowed(""),
    };
    let separator = separator.as_ref();
    let mut out = String::new();
    for (n, item) in items.try_iter()?.enumerate() {
        if n > 0 {
            charge(separator.len())?;
            out.push_str(separator);
        }
        match item.as_str() {
            Some(text) => {
                charge(text.len())?;
                out.push_str(text);
            }
            None => {
                let text = bounded_text(&item)?;
                out.push_str(&text);
            }
        }
    }
    Ok(out)
}

/// `text | replace(from, to)`: the size of the result is known before it is built.
fn replace(value: &Value, from: &Value, to: &Value) -> Result<String, Error> {
    let (text, from, to) = (self::text(value)?, self::text(from)?, self::text(to)?);
    charge(text.len())?;
    let found = if from.is_empty() {
        text.chars().count() + 1
    } else {
        text.matches(from.as_ref()).count()
    };
    charge(found.saturating_mul(to.len()))?;
    Ok(text.replace(from.as_ref(), &to))
}

/// `value | tojson`, written into the budget's room and no further.
fn tojson(value: &Value) -> Result<String, Error> {
    let mut out = Room::new();
    serde_json::to_writer(&mut out, value).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            "cannot write the value as JSON",
        )
        .with_source(e)
    })?;
    charge(out.bytes.len())?;
    String::from_utf8(out.bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "the JSON is not text"))
}

/// A value as text: a string as it is, anything else written within the budget.
fn text(value: &Value) -> Result<Cow<'_, str>, Error> {
    match value.as_str() {
        Some(s) => Ok(Cow::Borrowed(s)),
        None => bounded_text(value).map(Cow::Owned),
    }
}

/// A value that is not a string, as text within the budget.
fn bounded_text(value: &Value) -> Result<String, Error> {
    use std::io::Write;
    let mut out = Room::new();
    write!(out, "{value}")
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "the value is too large"))?;
    charge(out.bytes.len())?;
    String::from_utf8(out.bytes)
        .map_err(|_| Error::new(ErrorKind::InvalidOperation, "the value is not text"))
}

/// A buffer that holds at most what is left of the budget.
struct Room {
    bytes: Vec<u8>,
    limit: usize,
}

impl Room {
    fn new() -> Self {
        Self {
            bytes: Vec::new(),
            limit: LEFT.with(Cell::get),
        }
    }
}

impl std::io::Write for Room {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other("over the budget"));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
