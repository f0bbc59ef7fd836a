//! The Lua scripts the directory runs in Redis. Every change of shared state is one
//! script, so it is atomic: Redis runs one script at a time, and no other client's
//! command lands between a script's reads and its writes. Matchmaking on many nodes at
//! once therefore never overfills a room, with no read-then-write from Rust.
//!
//! The scripts read the clock with `TIME` (Redis's own, so nodes' clocks need not agree)
//! and build other nodes' key names from the prefix, as [`super::keys`] lays them out.
//! Touching keys not passed in `KEYS` limits the directory to one Redis (or a primary
//! with replicas), not Redis Cluster; that is how the Colyseus driver works too.
//!
//! The scripts clean as they go: a node in `P:nodes` whose `P:node:N` has expired is
//! removed from the set by the next script that walks it.

use redis::Script;

/// Full (re-)registration of a node: its record and all its rooms, replacing whatever
/// Redis held. Run at start, when the node key was found missing (Redis restarted, or the
/// node stalled past its TTL), and after writes failed.
///
/// KEYS: nodes, node, rooms, seats. ARGV: ttl ms, id, url, rooms, players, load, then
/// per room: id, JSON record, public (`1`/`0`), seats value.
const REGISTER: &str = r"
local ttl = tonumber(ARGV[1])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[4])
redis.call('HSET', KEYS[2], 'id', ARGV[2], 'url', ARGV[3], 'rooms', ARGV[4],
  'players', ARGV[5], 'load', ARGV[6], 'pending', 0)
for i = 7, #ARGV, 4 do
  redis.call('HSET', KEYS[3], ARGV[i], ARGV[i + 1])
  if ARGV[i + 2] == '1' then redis.call('HSET', KEYS[4], ARGV[i], ARGV[i + 3]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
redis.call('PEXPIRE', KEYS[3], ttl)
redis.call('PEXPIRE', KEYS[4], ttl)
redis.call('SADD', KEYS[1], ARGV[2])
return 1
";

/// The refresh every few seconds: pushes the node's TTL and its rooms' forward. Returns
/// 0 when the node key is gone (Redis lost it), and the node then re-registers.
///
/// KEYS: node, rooms, seats. ARGV: ttl ms.
const HEARTBEAT: &str = r"
if redis.call('PEXPIRE', KEYS[1], ARGV[1]) == 0 then return 0 end
redis.call('PEXPIRE', KEYS[2], ARGV[1])
redis.call('PEXPIRE', KEYS[3], ARGV[1])
return 1
";

/// One room changed (published, players changed, removed) and the node's totals with
/// it. Returns 0, writing nothing, when the node is not registered: the change is then
/// published by the next registration. The room hashes take the node key's remaining
/// TTL, so they expire with it.
///
/// KEYS: node, rooms, seats, reservations of the room. ARGV: rooms, players, load,
/// room id, JSON record (empty: removed), public (`1`/`0`), seats value, new (`1`: a
/// placement came true, so one fewer is pending).
const SYNC_ROOM: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'rooms', ARGV[1], 'players', ARGV[2], 'load', ARGV[3])
if ARGV[8] == '1' and tonumber(redis.call('HGET', KEYS[1], 'pending') or '0') > 0 then
  redis.call('HINCRBY', KEYS[1], 'pending', -1)
end
if ARGV[5] == '' then
  redis.call('HDEL', KEYS[2], ARGV[4])
  redis.call('HDEL', KEYS[3], ARGV[4])
  redis.call('DEL', KEYS[4])
else
  redis.call('HSET', KEYS[2], ARGV[4], ARGV[5])
  if ARGV[6] == '1' then
    redis.call('HSET', KEYS[3], ARGV[4], ARGV[7])
  else
    redis.call('HDEL', KEYS[3], ARGV[4])
  end
end
local ttl = redis.call('PTTL', KEYS[1])
if ttl > 0 then
  redis.call('PEXPIRE', KEYS[2], ttl)
  redis.call('PEXPIRE', KEYS[3], ttl)
end
return 1
";

/// Matchmaking: holds one seat in the fullest public room with a free seat among live
/// nodes (or in one given room), where taken = players + unexpired reservations < capacity.
/// "Fullest" is the highest taken / capacity; ties go to the lower node id, then room id.
/// Expired reservations of the chosen room are dropped before the new one is added, and
/// the reservations key lives as long as its longest-lived reservation (nodes may run
/// with different ticket TTLs, so a shorter one never cuts a longer one short).
///
/// Reply: node, room, url, expiry ms, taken (with this seat), capacity; empty when no
/// room has a free seat.
///
/// KEYS: nodes. ARGV: prefix, ticket ttl ms, reservation id, node and room (both empty:
/// any room).
const RESERVE: &str = r"
local p = ARGV[1]
local ttl = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nodes
if ARGV[4] ~= '' then nodes = {ARGV[4]} else nodes = redis.call('SMEMBERS', KEYS[1]) end
local best = nil
for _, node in ipairs(nodes) do
  if redis.call('EXISTS', p .. ':node:' .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
  else
    local seats
    if ARGV[4] ~= '' then
      local v = redis.call('HGET', p .. ':seats:' .. node, ARGV[5])
      if v then seats = {ARGV[5], v} else seats = {} end
    else
      seats = redis.call('HGETALL', p .. ':seats:' .. node)
    end
    for i = 1, #seats, 2 do
      local room = seats[i]
      local sp = string.find(seats[i + 1], ' ', 1, true)
      local players = tonumber(string.sub(seats[i + 1], 1, sp - 1))
      local cap = tonumber(string.sub(seats[i + 1], sp + 1))
      local held = redis.call('ZCOUNT', p .. ':resv:' .. node .. ':' .. room, '(' .. now, '+inf')
      local taken = players + held
      if taken < cap then
        local better = best == nil
        if not better then
          local a, b = taken * best.cap, best.taken * cap
          better = a > b or (a == b and (node < best.node or (node == best.node and room < best.room)))
        end
        if better then best = {node = node, room = room, taken = taken, cap = cap} end
      end
    end
  end
end
if best == nil then return {} end
local rkey = p .. ':resv:' .. best.node .. ':' .. best.room
redis.call('ZREMRANGEBYSCORE', rkey, '-inf', now)
redis.call('ZADD', rkey, now + ttl, ARGV[3])
if redis.call('PTTL', rkey) < ttl then redis.call('PEXPIRE', rkey, ttl) end
local url = redis.call('HGET', p .. ':node:' .. best.node, 'url')
return {best.node, best.room, url, string.format('%d', now + ttl),
  string.format('%d', best.taken + 1), string.format('%d', best.cap)}
";

/// Placement of a new room: the live node with the lowest load under 1, ties to fewer
/// rooms (counting placements not yet published as rooms), then the lower id. Counts the
/// placement as pending on that node, so a burst of placements spreads over nodes of
/// equal load instead of piling on one.
///
/// Reply: node, url; empty when no live node has room.
///
/// KEYS: nodes. ARGV: prefix.
const PLACE: &str = r"
local p = ARGV[1]
local best = nil
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', p .. ':node:' .. node, 'url', 'load', 'rooms', 'pending')
  if not f[1] then
    redis.call('SREM', KEYS[1], node)
  else
    local load = tonumber(f[2]) or 0
    local rooms = (tonumber(f[3]) or 0) + (tonumber(f[4]) or 0)
    if load < 1 then
      local better = best == nil
      if not better then
        better = load < best.load or (load == best.load and (rooms < best.rooms
          or (rooms == best.rooms and node < best.node)))
      end
      if better then best = {node = node, url = f[1], load = load, rooms = rooms} end
    end
  end
end
if best == nil then return {} end
redis.call('HINCRBY', p .. ':node:' .. best.node, 'pending', 1)
return {best.node, best.url}
";

/// The live nodes, each as id, url, rooms, players, load.
///
/// KEYS: nodes. ARGV: prefix.
const NODES: &str = r"
local p = ARGV[1]
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  local f = redis.call('HMGET', p .. ':node:' .. node, 'url', 'rooms', 'players', 'load')
  if not f[1] then
    redis.call('SREM', KEYS[1], node)
  else
    table.insert(out, {node, f[1], f[2] or '0', f[3] or '0', f[4] or '0'})
  end
end
return out
";

/// The rooms of live nodes, each as its JSON record and its unexpired reservations.
///
/// KEYS: nodes. ARGV: prefix.
const ROOMS: &str = r"
local p = ARGV[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local out = {}
for _, node in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if redis.call('EXISTS', p .. ':node:' .. node) == 0 then
    redis.call('SREM', KEYS[1], node)
  else
    local rooms = redis.call('HGETALL', p .. ':rooms:' .. node)
    for i = 1, #rooms, 2 do
      local held = redis.call('ZCOUNT', p .. ':resv:' .. node .. ':' .. rooms[i], '(' .. now, '+inf')
      table.insert(out, {rooms[i + 1], string.format('%d', held)})
    end
  end
end
return out
";

/// A node leaving (drain): out of the set first, then its record, rooms and
/// reservations, so no script can pick it once this has run.
///
/// KEYS: nodes, node, rooms, seats, then the reservations key of each of its rooms.
/// ARGV: id.
const LEAVE: &str = r"
redis.call('SREM', KEYS[1], ARGV[1])
for i = 2, #KEYS do redis.call('DEL', KEYS[i]) end
return 1
";

/// The scripts, hashed once; `invoke_async` sends `EVALSHA` and falls back to `EVAL`
/// when Redis does not know the script (a restarted Redis has an empty script cache).
#[derive(Debug)]
pub struct Scripts {
    /// See [`REGISTER`].
    pub register: Script,
    /// See [`HEARTBEAT`].
    pub heartbeat: Script,
    /// See [`SYNC_ROOM`].
    pub sync_room: Script,
    /// See [`RESERVE`].
    pub reserve: Script,
    /// See [`PLACE`].
    pub place: Script,
    /// See [`NODES`].
    pub nodes: Script,
    /// See [`ROOMS`].
    pub rooms: Script,
    /// See [`LEAVE`].
    pub leave: Script,
}

impl Default for Scripts {
    fn default() -> Self {
        Self {
            register: Script::new(REGISTER),
            heartbeat: Script::new(HEARTBEAT),
            sync_room: Script::new(SYNC_ROOM),
            reserve: Script::new(RESERVE),
            place: Script::new(PLACE),
            nodes: Script::new(NODES),
            rooms: Script::new(ROOMS),
            leave: Script::new(LEAVE),
        }
    }
}
