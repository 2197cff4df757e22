//! `InputType: JSON`, streamed: serde_json walks the document down the ItemsPointer
//! and hands each element of the array (or entry of the object) to the emitter as
//! soon as it is parsed, so items run while the rest of the object is still arriving
//! and memory holds one item at a time, not the document.

use super::{reader_failed, Emitter, Stop};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use shoal_expr::Failure;
use std::fmt;
use std::io::{BufRead, Read};

/// Counts the bytes serde_json has taken (it reads one at a time), so that an error
/// can name its byte offset.
struct Counted<R> {
    r: R,
    n: u64,
    /// Whether anything but white space came, so that an empty object gets its own error.
    content: bool,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.r.read(buf)?;
        self.n += n as u64;
        if !self.content {
            self.content = buf[..n].iter().any(|b| !b.is_ascii_whitespace());
        }
        Ok(n)
    }
}

/// Where the walk is and what it found; shared by the nested visitors.
struct State<'e> {
    em: &'e mut Emitter,
    /// Why the walk stopped on our side (MaxItems, a closed channel, a non-iterable
    /// target); serde only carries a string, so the reason waits here.
    stop: Option<Stop>,
    found: bool,
    /// Items of the target pushed so far, once the walk is inside it.
    items: Option<u64>,
}

impl State<'_> {
    fn push<E: de::Error>(&mut self, v: Value) -> Result<(), E> {
        *self.items.get_or_insert(0) += 1;
        self.em.push(v).map_err(|s| self.halt(s))
    }

    fn halt<E: de::Error>(&mut self, s: Stop) -> E {
        self.stop = Some(s);
        E::custom("stopped by the reader")
    }
}

/// One level of the walk: `path` is what is left of the ItemsPointer.
struct Walk<'a, 'e> {
    path: &'a [String],
    pointer_given: bool,
    st: &'a mut State<'e>,
}

impl<'de> DeserializeSeed<'de> for Walk<'_, '_> {
    type Value = ();
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl Walk<'_, '_> {
    fn scalar<E: de::Error>(self) -> Result<(), E> {
        if self.path.is_empty() {
            self.st.found = true;
            let f = reader_failed("Attempting to map over non-iterable node.");
            return Err(self.st.halt(Stop::Failed(f)));
        }
        Ok(())
    }
}

/// A JSON Pointer array index: digits without a sign or leading zero.
fn index(token: &str) -> Option<usize> {
    let ok = !token.is_empty()
        && token.bytes().all(|b| b.is_ascii_digit())
        && (token == "0" || !token.starts_with('0'));
    ok.then(|| token.parse().ok()).flatten()
}

impl<'de> Visitor<'de> for Walk<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let Some((token, rest)) = self.path.split_first() else {
            self.st.found = true;
            self.st.items = Some(0);
            while let Some(v) = seq.next_element::<Value>()? {
                self.st.push(v)?;
            }
            return Ok(());
        };
        let want = index(token);
        let mut i = 0;
        loop {
            let more = if Some(i) == want {
                let walk = Walk {
                    path: rest,
                    pointer_given: self.pointer_given,
                    st: &mut *self.st,
                };
                seq.next_element_seed(walk)?.is_some()
            } else {
                seq.next_element::<IgnoredAny>()?.is_some()
            };
            if !more {
                return Ok(());
            }
            i += 1;
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let Some((token, rest)) = self.path.split_first() else {
            self.st.found = true;
            if !self.pointer_given {
                let f = reader_failed("Attempting to map over non-iterable node.");
                return Err(self.st.halt(Stop::Failed(f)));
            }
            // An object under an ItemsPointer: each entry is an item.
            self.st.items = Some(0);
            while let Some(k) = map.next_key::<String>()? {
                let v = map.next_value::<Value>()?;
                self.st.push(json!({"key": k, "value": v}))?;
            }
            return Ok(());
        };
        let mut seen = false;
        while let Some(k) = map.next_key::<String>()? {
            if !seen && k == *token {
                seen = true;
                map.next_value_seed(Walk {
                    path: rest,
                    pointer_given: self.pointer_given,
                    st: &mut *self.st,
                })?;
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.scalar()
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.scalar()
    }
    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.scalar()
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.scalar()
    }
}

/// The pointer's reference tokens (RFC 6901), or None if it is not a pointer.
fn tokens(pointer: &str) -> Option<Vec<String>> {
    if pointer.is_empty() {
        return Some(Vec::new());
    }
    let rest = pointer.strip_prefix('/')?;
    Some(
        rest.split('/')
            .map(|t| t.replace("~1", "/").replace("~0", "~"))
            .collect(),
    )
}

/// Streams the items of a JSON document at `pointer` into `em`.
pub(super) fn stream(
    r: impl BufRead,
    pointer: Option<&str>,
    place: &str,
    em: &mut Emitter,
) -> Result<(), Stop> {
    let not_found = || -> Stop {
        let p = pointer.unwrap_or_default();
        reader_failed(format!("ItemsPointer {p} does not exist in {place}")).into()
    };
    let path = match pointer {
        Some(p) => tokens(p).ok_or_else(not_found)?,
        None => Vec::new(),
    };
    let mut counted = Counted {
        r,
        n: 0,
        content: false,
    };
    let mut st = State {
        em,
        stop: None,
        found: false,
        items: None,
    };
    let result = {
        let mut de = serde_json::Deserializer::from_reader(&mut counted);
        let walk = Walk {
            path: &path,
            pointer_given: pointer.is_some(),
            st: &mut st,
        };
        walk.deserialize(&mut de).and_then(|()| de.end())
    };
    if let Some(stop) = st.stop {
        return Err(stop);
    }
    if !counted.content {
        return Err(reader_failed(format!(
            "{place} is empty: a JSON ItemReader needs an array"
        ))
        .into());
    }
    match result {
        Ok(()) if st.found => Ok(()),
        Ok(()) => Err(not_found()),
        Err(e) => Err(syntax(e, place, counted.n, st.items).into()),
    }
}

fn syntax(e: serde_json::Error, place: &str, read: u64, items: Option<u64>) -> Failure {
    use serde_json::error::Category;
    let (what, at) = match e.classify() {
        Category::Eof => ("is truncated", read),
        Category::Io => ("could not be read", read),
        // serde_json has read the offending byte.
        Category::Syntax | Category::Data => ("is not valid JSON", read.saturating_sub(1)),
    };
    let item = match items {
        Some(i) => format!(", in item index {i}"),
        None => String::new(),
    };
    // serde_json's message ends with the line and column.
    reader_failed(format!("{place} {what} at byte {at}{item}: {e}"))
}
