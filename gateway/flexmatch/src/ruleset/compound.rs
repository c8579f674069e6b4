//! Compound rules' `statement`: `and`, `or`, `not` and `xor` over the other rules.

use super::*;

pub(super) fn parse_statement(text: &str, rules: &[Rule], own: usize) -> Result<Statement, String> {
    let mut p = StatementParser { s: text.as_bytes(), pos: 0, text, rules, own };
    let st = p.statement()?;
    p.skip_ws();
    if p.pos != p.s.len() {
        return Err(format!("unexpected {:?} after the statement", &text[p.pos..]));
    }
    if matches!(st, Statement::Rule(_)) {
        return Err("a compound statement must apply and, or, not or xor to rules".into());
    }
    Ok(st)
}

pub(super) struct StatementParser<'a> {
    s: &'a [u8],
    pos: usize,
    text: &'a str,
    rules: &'a [Rule],
    own: usize,
}

impl StatementParser<'_> {
    fn skip_ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn statement(&mut self) -> Result<Statement, String> {
        self.skip_ws();
        let start = self.pos;
        while self.pos < self.s.len() && !matches!(self.s[self.pos], b'(' | b')' | b',') {
            self.pos += 1;
        }
        let word = self.text[start..self.pos].trim().to_string();
        self.skip_ws();
        if self.s.get(self.pos) == Some(&b'(') {
            self.pos += 1;
            let mut args = vec![self.statement()?];
            loop {
                self.skip_ws();
                match self.s.get(self.pos) {
                    Some(b',') => {
                        self.pos += 1;
                        args.push(self.statement()?);
                    }
                    Some(b')') => {
                        self.pos += 1;
                        break;
                    }
                    _ => return Err(format!("expected ',' or ')' at offset {} of {:?}", self.pos, self.text)),
                }
            }
            return match word.as_str() {
                "and" => Ok(Statement::And(args)),
                "or" => Ok(Statement::Or(args)),
                "xor" => Ok(Statement::Xor(args)),
                "not" if args.len() == 1 => Ok(Statement::Not(Box::new(args.remove(0)))),
                "not" => Err("not() takes exactly one argument".into()),
                other => Err(format!("unknown operator {other:?}: use and, or, not, xor")),
            };
        }
        if word.is_empty() {
            return Err(format!("expected a rule name at offset {start} of {:?}", self.text));
        }
        let Some(index) = self.rules.iter().position(|r| r.name == word) else {
            return Err(format!("unknown rule {word:?} in the statement"));
        };
        if index == self.own {
            return Err("a compound rule cannot refer to itself".into());
        }
        match self.rules[index].kind {
            RuleKind::Compound { .. } => {
                Err(format!("{word:?} is a compound rule; compound rules combine non-compound rules"))
            }
            RuleKind::AbsoluteSort { .. } | RuleKind::DistanceSort { .. } => {
                Err(format!("{word:?} is a sort rule; sort rules order candidates and neither pass nor fail"))
            }
            _ => Ok(Statement::Rule(index)),
        }
    }
}

pub(super) fn statement_rules(st: &Statement, out: &mut Vec<usize>) {
    match st {
        Statement::Rule(r) => out.push(*r),
        Statement::And(v) | Statement::Or(v) | Statement::Xor(v) => v.iter().for_each(|s| statement_rules(s, out)),
        Statement::Not(s) => statement_rules(s, out),
    }
}
