//! A small XML tree over quick-xml: the XML protocols' responses are read whole into
//! it, then shaped by the model.

use quick_xml::events::Event;
use quick_xml::Reader;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Element {
    /// The local name (without a namespace prefix).
    pub name: String,
    pub attrs: Vec<(String, String)>,
    pub children: Vec<Element>,
    pub text: String,
}

impl Element {
    pub fn new(name: &str) -> Element {
        Element {
            name: name.to_string(),
            ..Element::default()
        }
    }

    pub fn leaf(name: &str, text: String) -> Element {
        Element {
            name: name.to_string(),
            text,
            ..Element::default()
        }
    }

    pub fn child(&self, name: &str) -> Option<&Element> {
        self.children.iter().find(|c| c.name == name)
    }

    pub fn children_named<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Element> {
        self.children.iter().filter(move |c| c.name == name)
    }

    pub fn attr(&self, name: &str) -> Option<&str> {
        self.attrs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn open(s: &quick_xml::events::BytesStart) -> Element {
        let mut el = Element::new(&String::from_utf8_lossy(s.local_name().as_ref()));
        for a in s.attributes().flatten() {
            let v = a
                .normalized_value(quick_xml::XmlVersion::Implicit1_0)
                .map(|c| c.into_owned())
                .unwrap_or_default();
            el.attrs
                .push((String::from_utf8_lossy(a.key.as_ref()).into_owned(), v));
        }
        el
    }

    /// The first element with this name anywhere below, this one included.
    pub fn find(&self, name: &str) -> Option<&Element> {
        if self.name == name {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(name))
    }

    /// Parses a document; `Err` names the byte offset where it broke.
    pub fn parse(text: &[u8]) -> Result<Element, String> {
        let mut reader = Reader::from_reader(text);
        reader.config_mut().trim_text(false);
        let mut stack: Vec<Element> = vec![Element::new("#document")];
        let mut buf = Vec::new();
        loop {
            let at = reader.buffer_position();
            let event = reader
                .read_event_into(&mut buf)
                .map_err(|e| format!("XML error at byte {at}: {e}"))?;
            match event {
                Event::Start(s) => stack.push(Element::open(&s)),
                Event::Empty(s) => {
                    let el = Element::open(&s);
                    if let Some(top) = stack.last_mut() {
                        top.children.push(el);
                    }
                }
                Event::End(_) => {
                    let el = stack.pop().ok_or("unbalanced XML")?;
                    match stack.last_mut() {
                        Some(top) => top.children.push(el),
                        None => return Err("unbalanced XML".into()),
                    }
                }
                Event::Text(t) => {
                    let s = t
                        .decode()
                        .map_err(|e| format!("XML error at byte {at}: {e}"))?;
                    let s = quick_xml::escape::unescape(&s)
                        .map_err(|e| format!("XML error at byte {at}: {e}"))?;
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&s);
                    }
                }
                Event::CData(t) => {
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&String::from_utf8_lossy(&t));
                    }
                }
                Event::GeneralRef(r) => {
                    let name = String::from_utf8_lossy(&r).into_owned();
                    let text = quick_xml::escape::unescape(&format!("&{name};"))
                        .map(|c| c.into_owned())
                        .unwrap_or_default();
                    if let Some(top) = stack.last_mut() {
                        top.text.push_str(&text);
                    }
                }
                Event::Eof => break,
                _ => {}
            }
            buf.clear();
        }
        let mut doc = stack.pop().ok_or("unbalanced XML")?;
        if !stack.is_empty() {
            return Err(format!(
                "XML ends inside <{}> at byte {}",
                doc.name,
                text.len()
            ));
        }
        doc.children
            .pop()
            .ok_or_else(|| "XML document without an element".into())
    }

    /// The element as text: compact, or indented by two spaces as AWS's query
    /// services write their responses.
    pub fn write(&self, indent: Option<usize>, out: &mut String) {
        let pad = |out: &mut String, n: usize| out.extend(std::iter::repeat_n(' ', n));
        if let Some(n) = indent {
            pad(out, n);
        }
        out.push('<');
        out.push_str(&self.name);
        for (k, v) in &self.attrs {
            out.push_str(&format!(
                " {k}=\"{}\"",
                quick_xml::escape::escape(v.as_str())
            ));
        }
        if self.children.is_empty() && self.text.is_empty() && indent.is_none() {
            out.push_str("/>");
            return;
        }
        out.push('>');
        if self.children.is_empty() {
            out.push_str(&quick_xml::escape::escape(self.text.as_str()));
        } else {
            for c in &self.children {
                if indent.is_some() {
                    out.push('\n');
                }
                c.write(indent.map(|n| n + 2), out);
            }
            if let Some(n) = indent {
                out.push('\n');
                pad(out, n);
            }
        }
        out.push_str("</");
        out.push_str(&self.name);
        out.push('>');
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_nested_text_attributes_and_entities() {
        let e = Element::parse(
            br#"<?xml version="1.0"?><A xmlns="x"><B k="v">1 &amp; 2</B><C/><B>3</B></A>"#,
        )
        .unwrap();
        assert_eq!(e.name, "A");
        assert_eq!(e.children_named("B").count(), 2);
        assert_eq!(e.child("B").unwrap().text, "1 & 2");
        assert_eq!(e.child("B").unwrap().attr("k"), Some("v"));
        assert!(e.child("C").is_some());
    }

    #[test]
    fn a_truncated_document_is_an_error_not_a_panic() {
        assert!(Element::parse(b"<A><B>1</B>").is_err());
        assert!(Element::parse(b"").is_err());
        assert!(Element::parse(b"</A>").is_err());
    }
}
