//! Stack selection: `--focus` / `--ignore` regexes and `--base` subtraction. Works on resolved
//! stacks, so it compares names, not addresses.

use std::collections::HashMap;

use regex::Regex;

use crate::error::Error;
use crate::resolve::{Frame, Stack, Tables};

/// `--focus` and `--ignore`: a stack is kept when some frame matches `focus` (if given) and no
/// frame matches `ignore` (if given). A frame matches when its function name or its library
/// path does.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    pub focus: Option<Regex>,
    pub ignore: Option<Regex>,
}

impl Filter {
    pub fn new(focus: Option<&str>, ignore: Option<&str>) -> Result<Filter, Error> {
        let compile = |flag: &str, re: Option<&str>| {
            re.map(|r| {
                Regex::new(r).map_err(|e| {
                    Error::Usage(format!(
                        "{flag} {r:?}: invalid regex: {}",
                        one_line(&e.to_string())
                    ))
                })
            })
            .transpose()
        };
        Ok(Filter {
            focus: compile("--focus", focus)?,
            ignore: compile("--ignore", ignore)?,
        })
    }

    fn frame_matches(re: &Regex, frame: &Frame) -> bool {
        re.is_match(&frame.function) || frame.library.as_deref().is_some_and(|l| re.is_match(l))
    }

    pub fn keeps(&self, tables: &Tables, stack: &Stack) -> bool {
        let any = |re: &Regex| {
            stack
                .frames
                .iter()
                .any(|&f| Self::frame_matches(re, &tables.frames[f]))
        };
        self.focus.as_ref().is_none_or(any) && !self.ignore.as_ref().is_some_and(any)
    }

    pub fn apply(&self, tables: &Tables, stacks: Vec<Stack>) -> Vec<Stack> {
        if self.focus.is_none() && self.ignore.is_none() {
            return stacks;
        }
        stacks
            .into_iter()
            .filter(|s| self.keeps(tables, s))
            .collect()
    }
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Merge stacks with the same frames (summing values), in first-seen order.
pub fn merge(stacks: Vec<Stack>) -> Vec<Stack> {
    let mut index: HashMap<Vec<usize>, usize> = HashMap::new();
    let mut out: Vec<Stack> = Vec::with_capacity(stacks.len());
    for stack in stacks {
        match index.get(&stack.frames) {
            Some(&i) => out[i].values.add(&stack.values),
            None => {
                index.insert(stack.frames.clone(), out.len());
                out.push(stack);
            }
        }
    }
    out
}

/// `stacks - base`, by frames. Stacks only in `base` come out negative; stacks whose values
/// cancel exactly are dropped.
pub fn subtract(stacks: Vec<Stack>, base: Vec<Stack>) -> Vec<Stack> {
    let mut out = merge(stacks);
    let mut index: HashMap<Vec<usize>, usize> = out
        .iter()
        .enumerate()
        .map(|(i, s)| (s.frames.clone(), i))
        .collect();
    for b in merge(base) {
        match index.get(&b.frames) {
            Some(&i) => out[i].values.sub(&b.values),
            None => {
                let mut negative = b.clone();
                negative.values = Default::default();
                negative.values.sub(&b.values);
                index.insert(b.frames, out.len());
                out.push(negative);
            }
        }
    }
    out.retain(|s| {
        let v = &s.values;
        [
            v.inuse_bytes,
            v.inuse_objects,
            v.alloc_bytes,
            v.alloc_objects,
        ]
        .iter()
        .any(|x| x.abs() > 1e-6)
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Values;

    fn stack(frames: &[usize], bytes: f64) -> Stack {
        Stack {
            locations: vec![],
            frames: frames.to_vec(),
            values: Values {
                inuse_bytes: bytes,
                ..Default::default()
            },
        }
    }

    #[test]
    fn subtracts_by_frames() {
        let new = vec![
            stack(&[1, 2], 100.0),
            stack(&[1, 2], 50.0),
            stack(&[3], 10.0),
        ];
        let old = vec![stack(&[1, 2], 30.0), stack(&[3], 10.0), stack(&[4], 7.0)];
        let d = subtract(new, old);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].values.inuse_bytes, 120.0);
        assert_eq!(d[1].frames, vec![4]);
        assert_eq!(d[1].values.inuse_bytes, -7.0);
    }

    #[test]
    fn focus_and_ignore() {
        let mut t = Tables::default();
        let a = t.intern_frame(Frame {
            function: "leak_a".into(),
            file: None,
            line: None,
            library: Some("/x/prog".into()),
        });
        let b = t.intern_frame(Frame {
            function: "main".into(),
            file: None,
            line: None,
            library: Some("/x/prog".into()),
        });
        let c = t.intern_frame(Frame {
            function: "leak_b".into(),
            file: None,
            line: None,
            library: Some("/lib/libz.so".into()),
        });
        let stacks = vec![stack(&[a, b], 1.0), stack(&[c, b], 2.0)];
        let f = Filter::new(Some("leak_"), Some("libz")).unwrap();
        let kept = f.apply(&t, stacks.clone());
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].frames[0], a);
        assert!(Filter::new(Some("("), None).is_err());
        assert_eq!(Filter::default().apply(&t, stacks).len(), 2);
    }
}
