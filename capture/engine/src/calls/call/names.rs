//! A call's names (Call-ID, method, parties, Request-URI, group) in one
//! boxed block instead of eight Strings: 48 bytes and one allocation in
//! place of 192 bytes and eight.

/// Which of the names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Name {
    CallId,
    Method,
    FromUser,
    ToUser,
    FromUri,
    ToUri,
    RequestUri,
    Group,
}

const NAMES: usize = 8;

#[derive(Default)]
pub(super) struct Names {
    /// The names one after the other ...
    text: Box<str>,
    /// ... and where each ends in `text`; the group's end is
    /// [`SAME_AS_CALL_ID`] when it is the Call-ID (most calls: a call is
    /// its own group until leg linking names another), kept once.
    ends: [u32; NAMES],
}

const SAME_AS_CALL_ID: u32 = u32::MAX;

impl Names {
    pub fn get(&self, n: Name) -> &str {
        if n == Name::Group && self.ends[Name::Group as usize] == SAME_AS_CALL_ID {
            return self.get(Name::CallId);
        }
        let i = n as usize;
        let start = i.checked_sub(1).map_or(0, |p| self.ends[p]) as usize;
        self.text.get(start..self.ends[i] as usize).unwrap_or("")
    }

    /// Sets names (rare: a call's names are set a few times in its life,
    /// so the block is rebuilt each time).
    pub fn set(&mut self, new: &[(Name, &str)]) {
        let mut text =
            String::with_capacity(self.text.len() + new.iter().map(|n| n.1.len()).sum::<usize>());
        let mut ends = [0u32; NAMES];
        let mut call_id_end = 0;
        for (i, end) in ends.iter_mut().enumerate() {
            let v = match new.iter().rev().find(|n| n.0 as usize == i) {
                Some((_, v)) => v,
                None => self.get(ALL[i]),
            };
            // The Call-ID is first and the group last: it is all written.
            if ALL[i] == Name::Group && text.get(..call_id_end as usize) == Some(v) {
                *end = SAME_AS_CALL_ID;
                continue;
            }
            text.push_str(v);
            // Names are cut from one SIP message: far below 4 GiB.
            *end = u32::try_from(text.len()).unwrap_or(SAME_AS_CALL_ID - 1);
            if i == Name::CallId as usize {
                call_id_end = *end;
            }
        }
        self.text = text.into_boxed_str();
        self.ends = ends;
    }
}

const ALL: [Name; NAMES] = [
    Name::CallId,
    Name::Method,
    Name::FromUser,
    Name::ToUser,
    Name::FromUri,
    Name::ToUri,
    Name::RequestUri,
    Name::Group,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_set_and_read_back_independently() {
        let mut n = Names::default();
        assert_eq!(n.get(Name::Group), "");
        n.set(&[
            (Name::CallId, "abc@h"),
            (Name::Group, "abc@h"),
            (Name::Method, "INVITE"),
        ]);
        n.set(&[(Name::FromUri, "sip:alice@a"), (Name::FromUser, "alice")]);
        n.set(&[(Name::Group, "first@h"), (Name::RequestUri, "")]);
        let want = [
            "abc@h",
            "INVITE",
            "alice",
            "",
            "sip:alice@a",
            "",
            "",
            "first@h",
        ];
        for (i, w) in want.iter().enumerate() {
            assert_eq!(n.get(ALL[i]), *w, "{:?}", ALL[i]);
        }
    }

    /// A group equal to the Call-ID is kept once; any other group,
    /// the empty one included, is its own, and each follows later changes.
    #[test]
    fn a_group_equal_to_the_call_id_is_kept_once() {
        let mut n = Names::default();
        n.set(&[(Name::CallId, "abc@h"), (Name::Group, "abc@h")]);
        assert_eq!(&*n.text, "abc@h");
        assert_eq!(n.get(Name::Group), "abc@h");
        n.set(&[(Name::ToUser, "bob")]);
        assert_eq!((n.get(Name::Group), n.get(Name::ToUser)), ("abc@h", "bob"));
        n.set(&[(Name::Group, "")]);
        assert_eq!((n.get(Name::CallId), n.get(Name::Group)), ("abc@h", ""));
        n.set(&[(Name::Group, "first@h")]);
        assert_eq!(n.get(Name::Group), "first@h");
        n.set(&[(Name::CallId, "first@h")]);
        assert_eq!(&*n.text, "first@hbob");
        n.set(&[(Name::CallId, "other@h")]);
        assert_eq!(
            (n.get(Name::CallId), n.get(Name::Group)),
            ("other@h", "first@h")
        );
    }
}
