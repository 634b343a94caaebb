//! [`Tree`]: the lean tree of a task file that the reader (`kdl.rs`) walks — node names,
//! entries, children and spans, nothing of the formatting.
//!
//! In: the nodes the fast path (`fast_kdl`) reads, pushed through a [`Builder`], or a
//! `KdlDocument` the `kdl` crate parsed ([`Builder::push_document`], [`Tree::from_document`]).
//! Out: a [`Tree`], walked through small `Copy` handles ([`Document`], [`Node`]) and borrowed
//! [`Entry`]s whose accessors mirror `KdlNode`'s and `KdlEntry`'s.
//!
//! Why: the crate's `KdlDocument` keeps every byte of formatting — a `KdlNode` is 448 bytes,
//! a `KdlEntry` 384, and every name, string and list is its own allocation. A 10,000-task
//! file became about 40,000 nodes, 50,000 entries, 700,000 allocations and 80 MB of touched
//! memory before the reader had looked at it. Here all nodes sit in one vector and all
//! entries in another, a node's entries and children are index ranges into them, and names
//! and strings without escapes borrow the text.
//!
//! Invariants: a tree holds the values and spans the crate gives (the fast path's tests
//! compare the tree it builds with the one converted from `KdlDocument::parse`); type
//! annotations are dropped (the reader ignores them, and the fast path never takes them).
//! The entries of a node are contiguous in `entries` and the nodes of a children block
//! contiguous in `nodes`: a list still being read sits on the builder's `open` stack and
//! moves into `nodes` when it ends; the top-level list stays where it is, and becomes `top`. Spans are `u32` offsets: a text over `u32::MAX` bytes (far over
//! [`MAX_FILE_BYTES`](crate::MAX_FILE_BYTES), which `parse_task_file` refuses first) is not
//! read by the fast path, and the conversion clamps its spans.

use std::borrow::Cow;

use kdl::{KdlDocument, KdlEntry, KdlIdentifier, KdlValue};
use miette::SourceSpan;

/// A byte range of the text, in half the room of a [`SourceSpan`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Span {
    offset: u32,
    len: u32,
}

impl Span {
    /// `start..end`; offsets past `u32::MAX` are clamped (see the module doc).
    pub(crate) fn new(start: usize, end: usize) -> Span {
        let offset = u32::try_from(start).unwrap_or(u32::MAX);
        let end = u32::try_from(end).unwrap_or(u32::MAX);
        Span {
            offset,
            len: end.saturating_sub(offset),
        }
    }

    /// `span` moved `by` bytes on.
    fn shifted(span: SourceSpan, by: usize) -> Span {
        let start = span.offset() + by;
        Span::new(start, start + span.len())
    }
}

impl From<Span> for SourceSpan {
    fn from(span: Span) -> SourceSpan {
        SourceSpan::new((span.offset as usize).into(), span.len as usize)
    }
}

/// A value, as `KdlValue` has them; strings borrow the text when they hold no escape.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value<'a> {
    /// A quoted or raw string.
    String(Cow<'a, str>),
    /// A whole number.
    Integer(i128),
    /// A number with a fraction or exponent.
    Float(f64),
    /// `#true` or `#false`.
    Bool(bool),
    /// `#null`.
    Null,
}

/// A node name or property key and where it is written (quotes included).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Name<'a> {
    value: Cow<'a, str>,
    span: Span,
}

impl<'a> Name<'a> {
    /// `value`, written at `span`.
    pub(crate) fn new(value: Cow<'a, str>, span: Span) -> Name<'a> {
        Name { value, span }
    }

    /// The name, taken out.
    pub(crate) fn into_value(self) -> Cow<'a, str> {
        self.value
    }

    /// The name, unquoted and unescaped.
    pub(crate) fn value(&self) -> &str {
        &self.value
    }

    /// Where the name is written.
    pub(crate) fn span(&self) -> SourceSpan {
        self.span.into()
    }
}

/// An argument or a property (`key=value`).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Entry<'a> {
    name: Option<Name<'a>>,
    value: Value<'a>,
    span: Span,
}

impl<'a> Entry<'a> {
    /// An argument (`name` is `None`) or a property, spanning `span`.
    pub(crate) fn new(name: Option<Name<'a>>, value: Value<'a>, span: Span) -> Entry<'a> {
        Entry { name, value, span }
    }

    /// The property's key; `None` for an argument.
    pub(crate) fn name(&self) -> Option<&Name<'a>> {
        self.name.as_ref()
    }

    /// The value.
    pub(crate) fn value(&self) -> &Value<'a> {
        &self.value
    }

    /// The value, or the property from its key through its value.
    pub(crate) fn span(&self) -> SourceSpan {
        self.span.into()
    }
}

/// The nodes of a children block: `nodes[start..end]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct List {
    start: u32,
    end: u32,
    span: Span,
}

/// One node as stored.
#[derive(Debug, Clone)]
struct NodeData<'a> {
    name: Name<'a>,
    span: Span,
    /// `entries[start..end]`.
    entries: (u32, u32),
    children: Option<List>,
}

/// A task file's nodes and entries, flat.
#[derive(Debug)]
pub(crate) struct Tree<'a> {
    /// The nodes of every children block.
    nodes: Vec<NodeData<'a>>,
    entries: Vec<Entry<'a>>,
    /// The top-level nodes: the builder's open stack as it was at the end, kept where it is
    /// (moving 10,000 nodes into `nodes` touched another 700 KB).
    top: Vec<NodeData<'a>>,
    span: Span,
}

impl<'a> Tree<'a> {
    /// The tree of a document the `kdl` crate parsed, its spans as they are (the tests
    /// compare the fast path's tree with it).
    #[cfg(test)]
    pub(crate) fn from_document(document: &KdlDocument) -> Tree<'a> {
        let mut builder = Builder::default();
        let span = builder.push_document(document, 0);
        builder.finish(span)
    }

    /// The whole file.
    pub(crate) fn document(&self) -> Document<'_, 'a> {
        Document {
            tree: self,
            nodes: &self.top,
            span: self.span,
        }
    }
}

/// A list of nodes: the file, or the children block of a node.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Document<'t, 'a> {
    tree: &'t Tree<'a>,
    nodes: &'t [NodeData<'a>],
    span: Span,
}

impl<'t, 'a> Document<'t, 'a> {
    /// From its first node to the end of its last (empty at where the first would start).
    pub(crate) fn span(self) -> SourceSpan {
        self.span.into()
    }

    /// Its nodes, in order.
    pub(crate) fn nodes(self) -> impl ExactSizeIterator<Item = Node<'t, 'a>> + Clone {
        let tree = self.tree;
        self.nodes.iter().map(move |data| Node { tree, data })
    }
}

/// One node: its name, entries and children.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Node<'t, 'a> {
    tree: &'t Tree<'a>,
    data: &'t NodeData<'a>,
}

impl<'t, 'a> Node<'t, 'a> {
    /// Its name.
    pub(crate) fn name(self) -> &'t Name<'a> {
        &self.data.name
    }

    /// From its name through its children block and the node space after it.
    pub(crate) fn span(self) -> SourceSpan {
        self.data.span.into()
    }

    /// Its arguments and properties, in order.
    pub(crate) fn entries(self) -> &'t [Entry<'a>] {
        let (start, end) = self.data.entries;
        self.tree
            .entries
            .get(start as usize..end as usize)
            .unwrap_or_default()
    }

    /// Its children block, if it has one.
    pub(crate) fn children(self) -> Option<Document<'t, 'a>> {
        self.data.children.map(|list| Document {
            tree: self.tree,
            nodes: (self.tree.nodes)
                .get(list.start as usize..list.end as usize)
                .unwrap_or_default(),
            span: list.span,
        })
    }
}

/// Builds a [`Tree`] list by list: entries go straight into place, a node waits on the
/// `open` stack until the list it is in ends.
#[derive(Debug, Default)]
pub(crate) struct Builder<'a> {
    nodes: Vec<NodeData<'a>>,
    entries: Vec<Entry<'a>>,
    open: Vec<NodeData<'a>>,
}

/// How far a builder had got, to go back to ([`Builder::mark`], [`Builder::rollback`]).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Mark {
    nodes: usize,
    entries: usize,
    open: usize,
}

impl<'a> Builder<'a> {
    /// A builder with room for about `nodes` nodes in blocks, `top` top-level nodes and
    /// `entries` entries.
    pub(crate) fn with_capacity(nodes: usize, top: usize, entries: usize) -> Builder<'a> {
        Builder {
            nodes: Vec::with_capacity(nodes),
            entries: Vec::with_capacity(entries),
            open: Vec::with_capacity(top),
        }
    }

    /// Where the builder is now.
    pub(crate) fn mark(&self) -> Mark {
        Mark {
            nodes: self.nodes.len(),
            entries: self.entries.len(),
            open: self.open.len(),
        }
    }

    /// Forget everything pushed since `mark`.
    pub(crate) fn rollback(&mut self, mark: Mark) {
        self.nodes.truncate(mark.nodes);
        self.entries.truncate(mark.entries);
        self.open.truncate(mark.open);
    }

    /// The index the next entry gets: a node's entries run from here to [`Self::entry_end`].
    pub(crate) fn entry_end(&self) -> u32 {
        u32::try_from(self.entries.len()).unwrap_or(u32::MAX)
    }

    /// Add an entry of the node being read.
    pub(crate) fn entry(&mut self, entry: Entry<'a>) {
        self.entries.push(entry);
    }

    /// The length of the open stack: a list starts here.
    pub(crate) fn open_len(&self) -> usize {
        self.open.len()
    }

    /// Add a finished node to the list being read; its entries are `entries` (from
    /// [`Self::entry_end`] before its first to after its last, before its children's).
    pub(crate) fn node(
        &mut self,
        name: Name<'a>,
        span: Span,
        entries: (u32, u32),
        children: Option<List>,
    ) {
        self.open.push(NodeData {
            name,
            span,
            entries,
            children,
        });
    }

    /// End the list whose nodes are open from `first` on: they move into place.
    pub(crate) fn list(&mut self, first: usize, span: Span) -> List {
        let start = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        self.nodes
            .extend(self.open.drain(first.min(self.open.len())..));
        let end = u32::try_from(self.nodes.len()).unwrap_or(u32::MAX);
        List { start, end, span }
    }

    /// The tree whose top level is every node still open, spanning `span`.
    pub(crate) fn finish(self, span: SourceSpan) -> Tree<'a> {
        Tree {
            nodes: self.nodes,
            entries: self.entries,
            top: self.open,
            span: Span::new(span.offset(), span.offset() + span.len()),
        }
    }

    /// Add the nodes of a document the crate parsed to the top level, every span moved `by`
    /// bytes on (a piece of the text into the whole); returns its span, moved.
    pub(crate) fn push_document(&mut self, document: &KdlDocument, by: usize) -> SourceSpan {
        for node in document.nodes() {
            let first_entry = self.entry_end();
            for entry in node.entries() {
                let entry = self.converted_entry(entry, by);
                self.entry(entry);
            }
            let entries = (first_entry, self.entry_end());
            let children = node.children().map(|children| {
                let first = self.open_len();
                self.push_document(children, by);
                self.list(first, Span::shifted(children.span(), by))
            });
            let name = converted_name(node.name(), by);
            self.node(name, Span::shifted(node.span(), by), entries, children);
        }
        Span::shifted(document.span(), by).into()
    }

    fn converted_entry(&self, entry: &KdlEntry, by: usize) -> Entry<'a> {
        let value = match entry.value() {
            KdlValue::String(s) => Value::String(Cow::Owned(s.clone())),
            KdlValue::Integer(i) => Value::Integer(*i),
            KdlValue::Float(f) => Value::Float(*f),
            KdlValue::Bool(b) => Value::Bool(*b),
            KdlValue::Null => Value::Null,
        };
        Entry {
            name: entry.name().map(|name| converted_name(name, by)),
            value,
            span: Span::shifted(entry.span(), by),
        }
    }
}

fn converted_name<'a>(name: &KdlIdentifier, by: usize) -> Name<'a> {
    Name {
        value: Cow::Owned(name.value().to_owned()),
        span: Span::shifted(name.span(), by),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spans(document: Document<'_, '_>) -> Vec<(String, SourceSpan, Vec<SourceSpan>)> {
        document
            .nodes()
            .map(|node| {
                (
                    node.name().value().to_owned(),
                    node.span(),
                    node.entries().iter().map(Entry::span).collect(),
                )
            })
            .collect()
    }

    #[test]
    fn converts_a_crate_document_with_its_values_spans_and_children() {
        let text = "(t)a 1 k=\"v\\n\" { b #true; c { d 2.5 } }\ne #null (u)\"x\"";
        let document = KdlDocument::parse(text).expect("valid KDL");
        let tree = Tree::from_document(&document);
        let root = tree.document();
        assert_eq!(root.span(), document.span());
        let nodes: Vec<_> = root.nodes().collect();
        assert_eq!(nodes.len(), 2);
        let a = nodes[0];
        assert_eq!(a.name().value(), "a");
        assert_eq!(a.name().span(), SourceSpan::from(3..4));
        assert_eq!(a.entries()[0].value(), &Value::Integer(1));
        assert!(a.entries()[0].name().is_none());
        let property = &a.entries()[1];
        assert_eq!(property.name().map(Name::value), Some("k"));
        assert_eq!(property.value(), &Value::String("v\n".into()));
        assert_eq!(property.span(), SourceSpan::from(7..14));
        let children = a.children().expect("a block");
        let names: Vec<_> = children.nodes().map(|n| n.name().value()).collect();
        assert_eq!(names, ["b", "c"]);
        let c = children.nodes().nth(1).expect("c");
        let d = c.children().expect("a block").nodes().next().expect("d");
        assert_eq!(d.entries()[0].value(), &Value::Float(2.5));
        let e = nodes[1];
        assert!(e.children().is_none());
        assert_eq!(e.entries()[0].value(), &Value::Null);
        assert_eq!(e.entries()[1].value(), &Value::String("x".into()));
        // Every node and entry span is the crate's.
        let expected: Vec<_> = document
            .nodes()
            .iter()
            .map(|n| {
                (
                    n.name().value().to_owned(),
                    n.span(),
                    n.entries().iter().map(KdlEntry::span).collect(),
                )
            })
            .collect();
        assert_eq!(spans(root), expected);
    }

    #[test]
    fn a_pushed_piece_is_shifted_and_a_rollback_forgets_it() {
        let mut builder = Builder::default();
        let first = KdlDocument::parse("a 1").expect("valid");
        builder.push_document(&first, 0);
        let mark = builder.mark();
        let dropped = KdlDocument::parse("x { y 2 }").expect("valid");
        builder.push_document(&dropped, 4);
        builder.rollback(mark);
        let second = KdlDocument::parse("b \"s\"").expect("valid");
        let span = builder.push_document(&second, 10);
        assert_eq!(span, SourceSpan::from(10..15));
        let tree = builder.finish(SourceSpan::from(0..15));
        let found = spans(tree.document());
        assert_eq!(
            found,
            [
                ("a".to_owned(), SourceSpan::from(0..3), vec![(2..3).into()]),
                (
                    "b".to_owned(),
                    SourceSpan::from(10..15),
                    vec![(12..15).into()]
                ),
            ]
        );
        assert_eq!(tree.entries.len(), 2);
        assert!(tree.nodes.is_empty());
    }

    #[test]
    fn spans_past_u32_are_clamped_not_wrapped() {
        let span = Span::new(usize::MAX - 1, usize::MAX);
        assert_eq!(span.offset, u32::MAX);
        assert_eq!(span.len, 0);
        let span = Span::new(5, 9);
        assert_eq!(SourceSpan::from(span), SourceSpan::from(5..9));
    }
}
