-- Room history for the relay edge function (CONTRACT.md "Room history, recovery and live updates
-- over SSE", RELAY_ROOM_HISTORY=N). Apply with `supabase db push`. Runs unchanged on Supabase, on
-- plain PostgreSQL 15+ and on the embedded dev database (PGlite). The relay connects as the role
-- that applied this migration (postgres, through the transaction pooler) and owns everything
-- here; no API role reads or writes it: a room's messages reach members only through the relay,
-- which checks relay.room_access first.
--
-- Each room keeps its newest N non-ephemeral broadcasts for at most RELAY_ROOM_HISTORY_TTL_S.
-- Every stored broadcast has an offset: per room 1, 2, 3, ... with no gaps, in the order the
-- database accepted them, so a member that comes back with ?since=<offset> gets exactly what it
-- missed, or learns (recovered: false) that some of it is gone.

create schema if not exists relay;

-- The newest offset each room ever gave out. The row outlives the room's messages: when all of
-- them have expired or been trimmed, the next broadcast still gets latest + 1, never 1 again, so
-- an offset once given always names the same broadcast and a member's `since` is never mistaken
-- for a place in a newer history. One row per room that ever stored a broadcast (a few dozen
-- bytes). Deleting a room's row (with its messages, in one transaction) resets the room: members
-- coming back with a `since` ahead of the new history are told recovered: false.
create table relay.room_offsets (
  room text primary key check (room ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  latest bigint not null check (latest >= 0)
);

comment on table relay.room_offsets is
  'The latest offset of each relay room with history; kept after its messages expire, so offsets only ever increase.';

-- The kept broadcasts. Never updated; deleted oldest first (by offset), so what a room keeps is
-- always one run of offsets with no hole: [oldest kept, latest].
create table relay.room_messages (
  room text not null check (room ~ '^[A-Za-z0-9_.:-]{1,100}$'),
  "offset" bigint not null check ("offset" >= 1),
  -- The sender's user id: the token's `sub` as text (third-party auth subjects need not be
  -- UUIDs), '' for a server publish (meta.user null). Not null, so that (room, sender, msg_id)
  -- is unique for a server's ids too on every PostgreSQL version (a null is distinct from every
  -- other null in a unique index); no signed-in user has an empty `sub`.
  sender text not null,
  -- The client's message id (meta.id), null when it sent none.
  msg_id text check (msg_id ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  event text not null check (event ~ '^[A-Za-z0-9_.:-]{1,64}$'),
  -- The payload as the relay serialised it for the live broadcast (JSON text), not jsonb: a replay
  -- then carries exactly the bytes live members got (key order, numbers as written), nothing is
  -- parsed or re-serialised on either side, and every JSON value the relay accepts is stored:
  -- jsonb refuses "\u0000" and unpaired surrogate escapes ("\ud800"), which JSON.stringify
  -- writes for such strings. JSON-equal is the promise; byte-equal is what is kept.
  payload text not null,
  -- When the relay accepted it (meta.at, from the accepting instance's clock). The TTL is
  -- measured against the database's clock (now()), the one clock every instance shares.
  created_at timestamptz not null,
  primary key (room, "offset")
);

-- A sender's ids, for idempotent resends: one row per (room, sender, id) while it is kept.
create unique index room_messages_sender_msg_id on relay.room_messages (room, sender, msg_id)
  where msg_id is not null;

-- The room's expired messages, found without reading its kept ones (the offset is included so
-- the newest expired offset comes from the index alone).
create index room_messages_room_created_at on relay.room_messages (room, created_at)
  include ("offset");

comment on table relay.room_messages is
  'Kept broadcasts of relay rooms (RELAY_ROOM_HISTORY): the newest N per room within the TTL; payload is the JSON text members received; sender '''' for a server publish.';

-- The offset below which a room keeps nothing: everything at or below the newest offset among
-- its messages older than the TTL, and everything older than its newest p_max. By offset, not by
-- time: instances' clocks differ a little, so a message may carry an earlier created_at than one
-- stored before it; cutting at the newest expired offset keeps the history one run without a
-- hole, so "the oldest kept offset" always means "everything after it is kept too".
create function relay.room_history_floor(
  p_room text,
  p_latest bigint,
  p_max integer,
  p_ttl_seconds integer
)
returns bigint
language sql
stable
set search_path = ''
as $$
  select greatest(
    coalesce(p_latest, 0) - p_max,
    coalesce((
      select max(m."offset") from relay.room_messages m
        where m.room = p_room and m.created_at < now() - make_interval(secs => p_ttl_seconds)
    ), 0)
  )
$$;

-- Stores one broadcast in one statement (one round trip): the next offset of the room, the row,
-- and the trim to the newest p_max within p_ttl_seconds. Or, when this sender's p_msg_id is
-- still kept in this room, stores nothing and answers that message's offset with o_duplicate.
--
-- Concurrency: every append to a room first locks the room's row in relay.room_offsets (creating
-- it when missing), so appends to one room take turns, on every instance, until their
-- transaction ends; appends to other rooms never wait. Each statement of this (volatile) function
-- reads a fresh snapshot, so after the lock it sees every append that went before, committed:
-- the offset is latest + 1 with no gap and no duplicate, and the id check sees a concurrent
-- twin's row, so two appends of one (room, sender, id) end with one row, both told its offset.
create function relay.append_room_message(
  p_room text,
  p_sender text,
  p_msg_id text,
  p_event text,
  p_payload text,
  p_at timestamptz,
  p_max integer,
  p_ttl_seconds integer
)
returns table (o_offset bigint, o_duplicate boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_latest bigint;
  v_floor bigint;
  v_offset bigint;
begin
  if p_max is null or p_max < 1 or p_ttl_seconds is null or p_ttl_seconds < 1 then
    raise exception 'relay.append_room_message: p_max and p_ttl_seconds must be 1 or more'
      using errcode = '22023';
  end if;
  select o.latest into v_latest from relay.room_offsets o where o.room = p_room for update;
  if not found then
    -- A room's first broadcast (or the first since its row was deleted while messages stayed:
    -- start after them rather than collide with them). A concurrent first append waits here
    -- for the other to commit, then reads and locks its row.
    insert into relay.room_offsets (room, latest)
      values (p_room, coalesce((
        select max(m."offset") from relay.room_messages m where m.room = p_room), 0))
      on conflict (room) do nothing;
    select o.latest into v_latest from relay.room_offsets o where o.room = p_room for update;
    if not found then
      raise exception 'relay.append_room_message: no offset row for room %', p_room;
    end if;
  end if;
  -- What is no longer kept goes first, so an expired twin neither counts nor collides.
  v_floor := relay.room_history_floor(p_room, v_latest, p_max, p_ttl_seconds);
  delete from relay.room_messages m where m.room = p_room and m."offset" <= v_floor;
  if p_msg_id is not null then
    select m."offset" into v_offset from relay.room_messages m
      where m.room = p_room and m.sender = p_sender and m.msg_id = p_msg_id;
    if found then
      return query select v_offset, true;
      return;
    end if;
  end if;
  v_offset := v_latest + 1;
  update relay.room_offsets o set latest = v_offset where o.room = p_room;
  insert into relay.room_messages (room, "offset", sender, msg_id, event, payload, created_at)
    values (p_room, v_offset, p_sender, p_msg_id, p_event, p_payload, p_at);
  delete from relay.room_messages m
    where m.room = p_room and m."offset" <= v_offset - p_max;
  return query select v_offset, false;
end;
$$;

-- Deletes the messages no longer kept by p_ttl_seconds (the same cut as
-- relay.room_history_floor: at or below each room's newest expired offset) in up to p_max_rooms
-- rooms. Appends trim their own room; this is for rooms nobody writes to any more, whose expired
-- messages are never served but would otherwise stay. It takes each room's counter lock as an
-- append does, skipping rooms being appended to right now (they trim themselves), so it never
-- waits for an append nor deadlocks with one. Optional: call it now and then (the relay, or
-- pg_cron: select cron.schedule('relay-room-history', '17 * * * *',
-- 'select relay.delete_expired_room_messages(86400)');). Resolves to the rows deleted.
create function relay.delete_expired_room_messages(
  p_ttl_seconds integer,
  p_max_rooms integer default 1000
)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_rows integer;
  v_deleted integer := 0;
begin
  for r in
    select e.room, max(e."offset") as upto from relay.room_messages e
      where e.created_at < now() - make_interval(secs => p_ttl_seconds)
      group by e.room
      limit p_max_rooms
  loop
    perform 1 from relay.room_offsets o where o.room = r.room for update skip locked;
    if found then
      delete from relay.room_messages m where m.room = r.room and m."offset" <= r.upto;
      get diagnostics v_rows = row_count;
      v_deleted := v_deleted + v_rows;
    end if;
  end loop;
  return v_deleted;
end;
$$;

-- Row level security with no policy: no API role sees a row. The owner (the relay) bypasses it.
alter table relay.room_offsets enable row level security;
alter table relay.room_messages enable row level security;

-- Supabase grants the API roles broad default privileges (and PostgreSQL lets PUBLIC execute new
-- functions): take everything back, whatever an earlier migration granted on the schema.
revoke all on relay.room_offsets, relay.room_messages
  from public, anon, authenticated, service_role;
revoke all on function relay.room_history_floor(text, bigint, integer, integer)
  from public, anon, authenticated, service_role;
revoke all on function relay.append_room_message(
  text, text, text, text, text, timestamptz, integer, integer
) from public, anon, authenticated, service_role;
revoke all on function relay.delete_expired_room_messages(integer, integer)
  from public, anon, authenticated, service_role;
