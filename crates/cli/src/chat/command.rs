//! What a line typed in `switchboard chat` asks for. The slash commands are
//! the raw TCP human mode's (`switchboard_protocol::text::parse_input`), with
//! the same names, arguments and meanings, so a person can move between
//! `nc` and the chat; the chat adds `/leave ROOM` (the text mode leaves the
//! current room only) and has no `/nick`, since its name is set when it
//! connects.

use switchboard_protocol::text::{parse_input, Input};

/// The chat's help, shown by `/help` and at start-up on request.
pub const HELP: &str = "\
* commands:
*   /join ROOM       join a room and make it the current one; plain lines are said there
*   /leave [ROOM]    leave ROOM (default: the current room)
*   /msg USER TEXT   direct message
*   /who             who is in the current room
*   /rooms           rooms on this server
*   /history [N]     the last N (default 50) stored messages of the current room
*   /auth TOKEN      hand the connection a fresh token (token mode)
*   /quit            leave the chat (also bye, Ctrl-D or Ctrl-C)
*   /help            this list
* keys: Up and Down recall typed lines, Ctrl-R searches them; Left, Right, Home, End, Ctrl-W edit";

/// A typed line, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChatCommand {
    /// A plain line, said in the current room.
    Say(String),
    Join(String),
    /// Leave a room (`None`: the current one).
    Leave(Option<String>),
    Msg {
        to: String,
        text: String,
    },
    Who,
    Rooms,
    History(Option<u64>),
    Auth(String),
    Quit,
    Help,
    /// Nothing typed.
    Empty,
    /// Not a command this chat runs: the explanation to show.
    Invalid(String),
}

/// Reads one typed line (without its newline).
pub fn parse(line: &str) -> ChatCommand {
    let line = line.trim();
    if line.is_empty() {
        return ChatCommand::Empty;
    }
    match parse_input(line) {
        Input::Say(text) => ChatCommand::Say(text.to_owned()),
        Input::Join(room) => ChatCommand::Join(room.to_owned()),
        Input::Leave => ChatCommand::Leave(leave_argument(line)),
        Input::Msg { to, text } => ChatCommand::Msg { to: to.to_owned(), text: text.to_owned() },
        Input::Who => ChatCommand::Who,
        Input::Rooms => ChatCommand::Rooms,
        Input::History(count) => ChatCommand::History(count),
        Input::Auth(token) => ChatCommand::Auth(token.to_owned()),
        Input::Quit => ChatCommand::Quit,
        Input::Help => ChatCommand::Help,
        Input::Nick(_) => {
            ChatCommand::Invalid("the chat's name is set when it connects: start it again with --name NAME".into())
        }
        Input::Invalid(why) => ChatCommand::Invalid(why),
    }
}

/// The room after `/leave`, if one was given.
fn leave_argument(line: &str) -> Option<String> {
    let rest = line.strip_prefix("/leave")?.trim();
    (!rest.is_empty()).then(|| rest.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slash_commands_mean_what_they_mean_in_the_text_mode() {
        assert_eq!(parse("  /join   lobby "), ChatCommand::Join("lobby".into()));
        assert_eq!(parse("/leave"), ChatCommand::Leave(None));
        assert_eq!(parse("/leave  ops "), ChatCommand::Leave(Some("ops".into())));
        let msg = ChatCommand::Msg { to: "bob".into(), text: "see you at 5".into() };
        assert_eq!(parse("/msg bob see you at 5"), msg);
        assert_eq!(parse("/who"), ChatCommand::Who);
        assert_eq!(parse("/rooms"), ChatCommand::Rooms);
        assert_eq!(parse("/history"), ChatCommand::History(None));
        assert_eq!(parse("/history 20"), ChatCommand::History(Some(20)));
        assert_eq!(parse("/auth ey.J.x"), ChatCommand::Auth("ey.J.x".into()));
        assert_eq!(parse("/quit"), ChatCommand::Quit);
        assert_eq!(parse("bye"), ChatCommand::Quit);
        assert_eq!(parse("/help"), ChatCommand::Help);
    }

    #[test]
    fn plain_lines_are_said_and_mistakes_explained() {
        assert_eq!(parse("hello there "), ChatCommand::Say("hello there".into()));
        assert_eq!(parse("   "), ChatCommand::Empty);
        assert!(matches!(parse("/join"), ChatCommand::Invalid(why) if why.contains("ROOM")));
        assert!(matches!(parse("/msg bob"), ChatCommand::Invalid(why) if why.contains("USER TEXT")));
        assert!(matches!(parse("/history lots"), ChatCommand::Invalid(why) if why.contains("[N]")));
        assert!(matches!(parse("/dance"), ChatCommand::Invalid(why) if why.contains("/help")));
        assert!(matches!(parse("/nick carol"), ChatCommand::Invalid(why) if why.contains("--name")));
        // A word that starts like a command is not that command.
        assert!(matches!(parse("/leaves"), ChatCommand::Invalid(_)));
    }
}
