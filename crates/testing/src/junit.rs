//! JUnit XML, the report CI systems read: one `<testsuite>` per suite file, one
//! `<testcase>` per case, a `<failure>` with the differences.

use crate::SuiteResult;
use quick_xml::events::{BytesEnd, BytesStart, BytesText, Event};
use quick_xml::Writer;

pub fn render(results: &[SuiteResult]) -> String {
    let mut w = Writer::new_with_indent(Vec::new(), b' ', 2);
    let total: usize = results.iter().map(|s| s.cases.len()).sum();
    let failed: usize = results.iter().map(SuiteResult::failed).sum();
    let secs: f64 = results.iter().map(|s| s.seconds).sum();
    let mut all = BytesStart::new("testsuites");
    all.push_attribute(("name", "shoal test"));
    all.push_attribute(("tests", total.to_string().as_str()));
    all.push_attribute(("failures", failed.to_string().as_str()));
    all.push_attribute(("time", format!("{secs:.3}").as_str()));
    // Writing to a Vec cannot fail.
    let _ = w.write_event(Event::Start(all));
    for s in results {
        let mut suite = BytesStart::new("testsuite");
        suite.push_attribute(("name", s.file.as_str()));
        suite.push_attribute(("tests", s.cases.len().to_string().as_str()));
        suite.push_attribute(("failures", s.failed().to_string().as_str()));
        suite.push_attribute(("errors", "0"));
        suite.push_attribute(("time", format!("{:.3}", s.seconds).as_str()));
        let _ = w.write_event(Event::Start(suite));
        for c in &s.cases {
            let mut case = BytesStart::new("testcase");
            case.push_attribute(("name", c.name.as_str()));
            case.push_attribute(("classname", s.file.as_str()));
            case.push_attribute(("time", format!("{:.3}", c.seconds).as_str()));
            if c.differences.is_empty() {
                let _ = w.write_event(Event::Empty(case));
                continue;
            }
            let _ = w.write_event(Event::Start(case));
            let mut failure = BytesStart::new("failure");
            failure.push_attribute(("message", c.differences[0].as_str()));
            failure.push_attribute(("type", "AssertionError"));
            let _ = w.write_event(Event::Start(failure));
            let _ = w.write_event(Event::Text(BytesText::new(&c.differences.join("\n"))));
            let _ = w.write_event(Event::End(BytesEnd::new("failure")));
            let _ = w.write_event(Event::End(BytesEnd::new("testcase")));
        }
        let _ = w.write_event(Event::End(BytesEnd::new("testsuite")));
    }
    let _ = w.write_event(Event::End(BytesEnd::new("testsuites")));
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    out.push_str(&String::from_utf8_lossy(&w.into_inner()));
    out.push('\n');
    out
}
