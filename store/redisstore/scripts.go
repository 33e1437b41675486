package redisstore

import "github.com/redis/go-redis/v9"

// The Lua scripts below run atomically inside Redis: no other client's
// command runs between their reads and writes, which is what makes the
// download count and message creation safe across gateway instances.
//
// They build key names from the prefix they are given (ARGV[1]), so every
// key of the store must be reachable from one server: a standalone Redis or
// a Sentinel-managed primary. On Redis Cluster put the whole prefix in a
// hash tag ("{attachgate}:") so all keys share one slot.
//
// Times travel as decimal Unix nanoseconds. Lua numbers are doubles, which
// cannot hold nanoseconds exactly, so the scripts compare them as strings
// (nanosStrictlyBefore); Go never sends negative values to a comparison.
//
// Key layout (p = prefix):
//
//	p msg:<id>           hash   message fields
//	p msg:<id>:files     set    IDs of the message's files
//	p file:<id>          hash   file fields
//	p file:<id>:links    set    IDs of the file's links
//	p link:<id>          hash   link fields; revoked_at only once revoked
//	p token:<sha256 hex> string the link ID
//	p files:by-expiry    zset   file IDs scored by ExpiresAt in microseconds
//	p mtoken:page:<sha256 hex>   string the message ID (message page token)
//	p mtoken:manage:<sha256 hex> string the message ID (sender's manage token)
//	p msg:<id>:access           list   access records (manage.go)
//	p file:<id>:downloaders     set    who downloaded the file (manage.go)

// luaHelpers is prepended to scripts that need them.
const luaHelpers = `
local function nanosStrictlyBefore(a, b)
  if #a ~= #b then return #a < #b end
  return a < b
end

local function deleteLinksOfFile(p, fileID)
  local set = p .. 'file:' .. fileID .. ':links'
  for _, linkID in ipairs(redis.call('SMEMBERS', set)) do
    local linkKey = p .. 'link:' .. linkID
    local tokenHash = redis.call('HGET', linkKey, 'token_hash')
    if tokenHash then redis.call('DEL', p .. 'token:' .. tokenHash) end
    redis.call('DEL', linkKey)
  end
  redis.call('DEL', set)
  redis.call('DEL', p .. 'file:' .. fileID .. ':downloaders')
end

-- dropFileAccesses removes a deleted file's records from its message's
-- access list (personal data lives only as long as the file).
local function dropFileAccesses(messageKey, fileID)
  local list = messageKey .. ':access'
  local items = redis.call('LRANGE', list, 0, -1)
  if #items == 0 then return end
  local prefix = fileID .. ' '
  local keep = {}
  for _, it in ipairs(items) do
    if string.sub(it, 1, #prefix) ~= prefix then keep[#keep + 1] = it end
  end
  if #keep == #items then return end
  local ttl = redis.call('PTTL', list)
  redis.call('DEL', list)
  if #keep > 0 then
    redis.call('RPUSH', list, unpack(keep))
    if ttl > 0 then redis.call('PEXPIRE', list, ttl) end
  end
end

local function deleteMessageKeys(p, messageKey)
  local h = redis.call('HMGET', messageKey, 'page_token_hash', 'manage_token_hash')
  if h[1] and h[1] ~= '' then redis.call('DEL', p .. 'mtoken:page:' .. h[1]) end
  if h[2] and h[2] ~= '' then redis.call('DEL', p .. 'mtoken:manage:' .. h[2]) end
  redis.call('DEL', messageKey, messageKey .. ':files', messageKey .. ':access')
end
`

// createMessageScript stores a message with its files and links, or
// nothing: every existence check runs before the first write, and the
// writes cannot fail, so a refused message leaves no trace.
//
// ARGV: prefix, ttl in ms, then records of
// kind ("m", "f" or "l"), id, extra1, extra2, n, n field/value items;
// for "f" extra1 is the expiry score; for "l" extra1 is the file ID and
// extra2 the token hash.
var createMessageScript = redis.NewScript(`
local p, ttl = ARGV[1], ARGV[2]
local records = {}
local i = 3
while i <= #ARGV do
  local n = tonumber(ARGV[i + 4])
  local fields = {}
  for j = 1, n do fields[j] = ARGV[i + 4 + j] end
  records[#records + 1] = {kind = ARGV[i], id = ARGV[i + 1], extra1 = ARGV[i + 2], extra2 = ARGV[i + 3], fields = fields}
  i = i + 5 + n
end

local function keyOf(r)
  if r.kind == 'm' then return p .. 'msg:' .. r.id end
  if r.kind == 'f' then return p .. 'file:' .. r.id end
  return p .. 'link:' .. r.id
end
local names = {m = 'message', f = 'file', l = 'link'}

for _, r in ipairs(records) do
  if redis.call('EXISTS', keyOf(r)) == 1 then
    return redis.error_reply(names[r.kind] .. ' ' .. r.id .. ' already exists')
  end
  if r.kind == 'l' and redis.call('EXISTS', p .. 'token:' .. r.extra2) == 1 then
    return redis.error_reply('link ' .. r.id .. ': token hash already in use')
  end
  if r.kind == 'm' and r.extra1 ~= '' and redis.call('EXISTS', p .. 'mtoken:page:' .. r.extra1) == 1 then
    return redis.error_reply('message ' .. r.id .. ': page token hash already in use')
  end
  if r.kind == 'm' and r.extra2 ~= '' and redis.call('EXISTS', p .. 'mtoken:manage:' .. r.extra2) == 1 then
    return redis.error_reply('message ' .. r.id .. ': manage token hash already in use')
  end
end

local messageKey
for _, r in ipairs(records) do
  local key = keyOf(r)
  redis.call('HSET', key, unpack(r.fields))
  redis.call('PEXPIRE', key, ttl)
  if r.kind == 'm' then
    messageKey = key
    if r.extra1 ~= '' then redis.call('SET', p .. 'mtoken:page:' .. r.extra1, r.id, 'PX', ttl) end
    if r.extra2 ~= '' then redis.call('SET', p .. 'mtoken:manage:' .. r.extra2, r.id, 'PX', ttl) end
  elseif r.kind == 'f' then
    local set = messageKey .. ':files'
    redis.call('SADD', set, r.id)
    redis.call('PEXPIRE', set, ttl)
    redis.call('ZADD', p .. 'files:by-expiry', r.extra1, r.id)
  else
    local set = p .. 'file:' .. r.extra1 .. ':links'
    redis.call('SADD', set, r.id)
    redis.call('PEXPIRE', set, ttl)
    redis.call('SET', p .. 'token:' .. r.extra2, r.id, 'PX', ttl)
  end
end
return 1
`)

// linkViewScript reads a link with its file and message in one consistent
// step. KEYS[1] is the link key, or the token key when ARGV[2] is "token".
// It returns {} when any of the three is missing.
var linkViewScript = redis.NewScript(`
local p = ARGV[1]
local linkKey = KEYS[1]
if ARGV[2] == 'token' then
  local linkID = redis.call('GET', KEYS[1])
  if not linkID then return {} end
  linkKey = p .. 'link:' .. linkID
end
local link = redis.call('HGETALL', linkKey)
if #link == 0 then return {} end
local fileID = redis.call('HGET', linkKey, 'file_id')
local file = redis.call('HGETALL', p .. 'file:' .. fileID)
if #file == 0 then return {} end
local messageID = redis.call('HGET', p .. 'file:' .. fileID, 'message_id')
local message = redis.call('HGETALL', p .. 'msg:' .. messageID)
if #message == 0 then return {} end
return {link, file, message}
`)

// messageViewScript reads a message with every link of its files in one
// consistent step. KEYS[1] is the message key, or a message token key when
// ARGV[2] is "token". It returns {} when the message is missing, else
// {message fields, {link fields, file fields}...}.
var messageViewScript = redis.NewScript(`
local p = ARGV[1]
local messageKey = KEYS[1]
if ARGV[2] == 'token' then
  local id = redis.call('GET', KEYS[1])
  if not id then return {} end
  messageKey = p .. 'msg:' .. id
end
local message = redis.call('HGETALL', messageKey)
if #message == 0 then return {} end
local out = {message}
for _, fileID in ipairs(redis.call('SMEMBERS', messageKey .. ':files')) do
  local file = redis.call('HGETALL', p .. 'file:' .. fileID)
  if #file > 0 then
    for _, linkID in ipairs(redis.call('SMEMBERS', p .. 'file:' .. fileID .. ':links')) do
      local link = redis.call('HGETALL', p .. 'link:' .. linkID)
      if #link > 0 then out[#out + 1] = {link, file} end
    end
  end
end
if #out == 1 then return {} end
return out
`)

// Outcomes of countDownloadScript, its first reply element.
const (
	countOK       = 0
	countNotFound = 1
	countRevoked  = 2
	countExpired  = 3
	countLimit    = 4
)

// countDownloadScript checks that the link is usable at ARGV[1] (Unix ns)
// and increments its counter in the same atomic step: concurrent downloads
// on any number of instances cannot overrun max_downloads. Revocation wins
// over expiry, expiry over the limit. It returns {outcome, link fields}.
var countDownloadScript = redis.NewScript(luaHelpers + `
local key, now = KEYS[1], ARGV[1]
if redis.call('EXISTS', key) == 0 then return {1} end
local v = redis.call('HMGET', key, 'revoked_at', 'expires_at', 'max_downloads', 'downloads')
local outcome = 0
if v[1] then
  outcome = 2
elseif not nanosStrictlyBefore(now, v[2]) then
  outcome = 3
elseif tonumber(v[3]) > 0 and tonumber(v[4]) >= tonumber(v[3]) then
  outcome = 4
end
if outcome == 0 then redis.call('HINCRBY', key, 'downloads', 1) end
return {outcome, redis.call('HGETALL', key)}
`)

// revokeLinkScript sets revoked_at unless already set (the first
// revocation time stays). It returns 0 when the link is unknown.
var revokeLinkScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSETNX', KEYS[1], 'revoked_at', ARGV[1])
return 1
`)

// deleteMessageScript removes a message, its files, their links and
// tokens and their expiry index entries. It returns {0} when the message
// is unknown, else {1, {file fields}...}.
var deleteMessageScript = redis.NewScript(luaHelpers + `
local p, messageKey = ARGV[1], KEYS[1]
if redis.call('EXISTS', messageKey) == 0 then return {0} end
local removed = {}
for _, fileID in ipairs(redis.call('SMEMBERS', messageKey .. ':files')) do
  local fileKey = p .. 'file:' .. fileID
  local file = redis.call('HGETALL', fileKey)
  if #file > 0 then removed[#removed + 1] = file end
  deleteLinksOfFile(p, fileID)
  redis.call('DEL', fileKey)
  redis.call('ZREM', p .. 'files:by-expiry', fileID)
end
deleteMessageKeys(p, messageKey)
return {1, removed}
`)

// deleteFileScript removes a file with its links and tokens, and its
// message when no other file of that message is left. A file whose
// metadata Redis already expired (TTL) but which is still in the expiry
// index counts as known: its index entry goes. It returns 0 when unknown.
var deleteFileScript = redis.NewScript(luaHelpers + `
local p, fileID = ARGV[1], ARGV[2]
local fileKey = p .. 'file:' .. fileID
local messageID = redis.call('HGET', fileKey, 'message_id')
local indexed = redis.call('ZREM', p .. 'files:by-expiry', fileID)
if not messageID then
  if indexed == 0 then return 0 end
  deleteLinksOfFile(p, fileID)
  return 1
end
deleteLinksOfFile(p, fileID)
redis.call('DEL', fileKey)
local messageKey = p .. 'msg:' .. messageID
local files = messageKey .. ':files'
redis.call('SREM', files, fileID)
dropFileAccesses(messageKey, fileID)
for _, other in ipairs(redis.call('SMEMBERS', files)) do
  if redis.call('EXISTS', p .. 'file:' .. other) == 0 then redis.call('SREM', files, other) end
end
if redis.call('SCARD', files) == 0 then deleteMessageKeys(p, messageKey) end
return 1
`)
