//! Where a node of the config text is: line and column of `services[2].routes[0]`, say.

use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// One step of a path into the document: a mapping key or a sequence index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step<'a> {
    /// The value under this key.
    Key(&'a str),
    /// The item at this index.
    Index(usize),
}

/// The 1-based line and column where the node at `path` starts in `text`, if it is there.
pub fn locate(text: &str, path: &[Step<'_>]) -> Option<(usize, usize)> {
    let mut finder = Finder {
        target: path,
        stack: Vec::new(),
        found: None,
        first_key_pending: None,
    };
    Parser::new_from_str(text).load(&mut finder, false).ok()?;
    finder.found
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { next: usize },
}

struct Finder<'t, 'a> {
    target: &'t [Step<'a>],
    /// Open containers, outermost first.
    stack: Vec<Frame>,
    found: Option<(usize, usize)>,
    /// The target is a mapping that just started: its first key marks it (a block mapping's
    /// own start mark lies past that key).
    first_key_pending: Option<Marker>,
}

impl Finder<'_, '_> {
    /// Whether the node about to start is a mapping key (not a value with a path).
    fn is_key(&self) -> bool {
        matches!(self.stack.last(), Some(Frame::Mapping { key: None }))
    }

    /// Whether the open containers plus the node about to start are the target.
    fn at_target(&self) -> bool {
        self.stack.len() == self.target.len()
            && self
                .stack
                .iter()
                .zip(self.target)
                .all(|(frame, step)| match (frame, step) {
                    (Frame::Mapping { key: Some(k) }, Step::Key(want)) => k == want,
                    (Frame::Sequence { next }, Step::Index(want)) => next == want,
                    _ => false,
                })
    }

    /// A value node finished: its parent moves on to the next key or item.
    fn value_done(&mut self) {
        match self.stack.last_mut() {
            Some(Frame::Mapping { key }) => *key = None,
            Some(Frame::Sequence { next }) => *next += 1,
            None => {}
        }
    }

    fn node_starts(&mut self, mark: Marker) {
        if self.found.is_none() && self.at_target() {
            self.found = Some((mark.line(), mark.col() + 1));
        }
    }
}

impl MarkedEventReceiver for Finder<'_, '_> {
    fn on_event(&mut self, event: Event, mark: Marker) {
        match event {
            Event::Scalar(value, ..) if self.is_key() => {
                if self.first_key_pending.take().is_some() {
                    self.found = Some((mark.line(), mark.col() + 1));
                }
                if let Some(Frame::Mapping { key }) = self.stack.last_mut() {
                    *key = Some(value);
                }
            }
            Event::Scalar(..) | Event::Alias(_) => {
                self.node_starts(mark);
                self.value_done();
            }
            Event::MappingStart(..) => {
                if self.found.is_none() && self.at_target() {
                    self.first_key_pending = Some(mark);
                }
                self.stack.push(Frame::Mapping { key: None });
            }
            Event::SequenceStart(..) => {
                self.node_starts(mark);
                self.stack.push(Frame::Sequence { next: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                // An empty mapping has no first key: its own start marks it.
                if let Some(start) = self.first_key_pending.take() {
                    self.found = Some((start.line(), start.col() + 1));
                }
                self.stack.pop();
                self.value_done();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
listen: 127.0.0.1:8080
services:
  - name: a
    routes:
      - path: /public
        auth: none
      - { path: /admin, roles: [admin] }
  - name: b
    routes:
      - path: /x
        auth: none
";

    #[test]
    fn finds_items_of_nested_sequences() {
        let route = |s, r| {
            locate(
                TEXT,
                &[
                    Step::Key("services"),
                    Step::Index(s),
                    Step::Key("routes"),
                    Step::Index(r),
                ],
            )
        };
        assert_eq!(route(0, 0), Some((5, 9)));
        assert_eq!(
            route(0, 1),
            Some((7, 11)),
            "the first key of a flow mapping"
        );
        assert_eq!(route(1, 0), Some((10, 9)));
        assert_eq!(route(1, 1), None);
        assert_eq!(locate(TEXT, &[Step::Key("listen")]), Some((1, 9)));
        assert_eq!(locate(TEXT, &[Step::Key("nothing")]), None);
    }

    #[test]
    fn keys_are_not_mistaken_for_values() {
        let text = "a:\n  b: c\n  d: [1, 2]\n";
        assert_eq!(
            locate(text, &[Step::Key("a"), Step::Key("d"), Step::Index(1)]),
            Some((3, 10))
        );
        assert_eq!(locate(text, &[Step::Key("b")]), None);
        assert_eq!(locate("not: [valid", &[Step::Key("not")]), None);
        assert!(locate("a: {}\n", &[Step::Key("a")]).is_some());
    }
}
