//! The Lua scripts, loaded once per process. The redis crate runs them with
//! `EVALSHA` and falls back to `EVAL` when Redis answers `NOSCRIPT` (after a
//! restart or a failover), so no `SCRIPT LOAD` step is needed.

use redis::Script;
use std::sync::LazyLock;

/// Every script the engine runs, with the name its errors carry.
#[derive(Debug)]
pub(crate) struct Scripts {
    pub publish: Script,
    pub meta: Script,
    pub diverge: Script,
    pub delivered: Script,
    pub presence_add: Script,
    pub presence_remove: Script,
    pub presence_list: Script,
    pub heartbeat: Script,
    pub reaper: Script,
    pub forget_node: Script,
}

static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    publish: Script::new(include_str!("lua/publish.lua")),
    meta: Script::new(include_str!("lua/meta.lua")),
    diverge: Script::new(include_str!("lua/diverge.lua")),
    delivered: Script::new(include_str!("lua/delivered.lua")),
    presence_add: Script::new(include_str!("lua/presence_add.lua")),
    presence_remove: Script::new(include_str!("lua/presence_remove.lua")),
    presence_list: Script::new(include_str!("lua/presence_list.lua")),
    heartbeat: Script::new(include_str!("lua/heartbeat.lua")),
    reaper: Script::new(include_str!("lua/reaper.lua")),
    forget_node: Script::new(include_str!("lua/forget_node.lua")),
});

pub(crate) fn scripts() -> &'static Scripts {
    &SCRIPTS
}
