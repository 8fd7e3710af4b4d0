-- Resumable sessions for the relay edge function (CONTRACT.md "Resumable sessions").
-- Apply with `supabase db push`. Runs unchanged on Supabase and on plain PostgreSQL 15+.
-- The relay connects as the role that applied this migration (postgres, through the
-- transaction pooler) and owns everything here; nobody else may read or write it: a
-- conversation's text is the user's, and not even they read it back through the API.

create schema if not exists relay;

-- One row per (user, session id): the same id from two users is two sessions, so no user can
-- reach or detect another's. user_id is the token's `sub` as text (third-party auth subjects
-- need not be UUIDs). Times come from the relay's clock, so every comparison uses one clock.
create table relay.sessions (
  user_id text not null,
  session_id text not null check (session_id ~ '^[A-Za-z0-9_-]{22,64}$'),
  -- Bumped when expired state is given up: items of an older generation are dead.
  generation integer not null default 1,
  -- The one connection that may write (a newer connection takes over; the old one is closed
  -- 4409), and when it took over: writes the previous owner made before that still count.
  owner_conn uuid,
  owner_since timestamptz,
  -- The connection that last started this session afresh (so a retried restart is a no-op).
  fresh_conn uuid,
  -- The effective configuration (session.updated less read-only fields), as session.update takes it.
  config jsonb,
  created_at timestamptz not null default now(),
  active_at timestamptz not null,
  expires_at timestamptz not null,
  primary key (user_id, session_id)
);

create index sessions_expires_at on relay.sessions (expires_at);

comment on table relay.sessions is
  'Resumable relay sessions: owner connection, effective configuration, expiry (RELAY_RESUME_TTL_S after last activity).';

-- Every finished conversation item with something a replay can carry, in conversation order
-- (position, then done_at), as the relay stores it: text and transcripts, function calls and
-- outputs; never audio or images.
create table relay.session_items (
  user_id text not null,
  session_id text not null,
  item_id text not null,
  generation integer not null,
  position double precision not null,
  item jsonb not null,
  done_at timestamptz not null,
  primary key (user_id, session_id, item_id),
  foreign key (user_id, session_id) references relay.sessions on delete cascade
);

comment on table relay.session_items is
  'Conversation items of resumable relay sessions, in order; deleted with their session.';

-- Applies a batch of writes in order, in one statement (so one transaction), and reports, for
-- each connection named, who owns its session now. A write counts when its connection owns the
-- session, or owned it and the write happened before the takeover (an item finished on the old
-- connection while the new one was connecting). Every write is idempotent: the relay retries a
-- batch whose answer it did not get.
create function relay.write_sessions(p_records jsonb, p_ttl_seconds integer)
returns table (o_conn uuid, o_owner uuid, o_found boolean)
language plpgsql
set search_path = ''
as $$
declare
  r record;
  v_at timestamptz;
  v_expires timestamptz;
  v_generation integer;
begin
  for r in
    select * from jsonb_to_recordset(p_records) as x(
      kind text, user_id text, session_id text, conn uuid, generation integer, at_ms bigint,
      item_id text, "position" double precision, item jsonb, config jsonb)
  loop
    v_at := to_timestamp(r.at_ms / 1000.0);
    v_expires := v_at + make_interval(secs => p_ttl_seconds);
    if r.kind = 'restart' then
      -- The connection starts the session afresh; a retry by the same connection, or a restart
      -- older than the current owner's claim, changes nothing.
      insert into relay.sessions as s
          (user_id, session_id, owner_conn, owner_since, fresh_conn, active_at, expires_at)
        values (r.user_id, r.session_id, r.conn, v_at, r.conn, v_at, v_expires)
        on conflict (user_id, session_id) do update set
          generation = s.generation + 1,
          config = null,
          owner_conn = excluded.owner_conn,
          owner_since = excluded.owner_since,
          fresh_conn = excluded.fresh_conn,
          active_at = greatest(s.active_at, excluded.active_at),
          expires_at = greatest(s.expires_at, excluded.expires_at)
        where s.fresh_conn is distinct from excluded.fresh_conn
          and (s.owner_since is null or s.owner_since <= excluded.owner_since);
      -- The conversation it replaced is gone.
      delete from relay.session_items i
        using relay.sessions s
        where i.user_id = r.user_id and i.session_id = r.session_id
          and s.user_id = i.user_id and s.session_id = i.session_id
          and i.generation < s.generation;
    elsif r.kind = 'release' then
      update relay.sessions s set
          owner_conn = null,
          active_at = greatest(s.active_at, v_at),
          expires_at = greatest(s.expires_at, v_expires)
        where s.user_id = r.user_id and s.session_id = r.session_id and s.owner_conn = r.conn;
    else
      update relay.sessions s set
          config = case when r.kind = 'config' then r.config else s.config end,
          active_at = greatest(s.active_at, v_at),
          expires_at = greatest(s.expires_at, v_expires)
        where s.user_id = r.user_id and s.session_id = r.session_id
          and (s.owner_conn = r.conn or (s.generation = r.generation and s.owner_since > v_at))
        returning s.generation into v_generation;
      if found and r.kind = 'item' then
        insert into relay.session_items as i
            (user_id, session_id, item_id, generation, "position", item, done_at)
          values (r.user_id, r.session_id, r.item_id, v_generation, r."position", r.item, v_at)
          on conflict (user_id, session_id, item_id) do update set
            generation = excluded.generation,
            "position" = excluded."position",
            item = excluded.item,
            done_at = excluded.done_at;
      elsif found and r.kind = 'delete' then
        delete from relay.session_items i
          where i.user_id = r.user_id and i.session_id = r.session_id and i.item_id = r.item_id;
      end if;
    end if;
  end loop;
  return query
    select distinct on (x.conn) x.conn, s.owner_conn, s.user_id is not null
      from jsonb_to_recordset(p_records) as x(user_id text, session_id text, conn uuid)
      left join relay.sessions s on s.user_id = x.user_id and s.session_id = x.session_id;
end;
$$;

-- Deletes up to p_limit expired sessions (their items go with them). The relay calls it once a
-- minute while it serves sessions; to purge while no instance runs, schedule it (e.g. pg_cron).
create function relay.delete_expired_sessions(
  p_before timestamptz default now(),
  p_limit integer default 1000
)
returns integer
language plpgsql
set search_path = ''
as $$
declare
  v_sessions integer;
begin
  delete from relay.sessions s
    where (s.user_id, s.session_id) in (
      select e.user_id, e.session_id from relay.sessions e
        where e.expires_at <= p_before
        limit p_limit
    );
  get diagnostics v_sessions = row_count;
  return v_sessions;
end;
$$;

-- Row level security with no policy: no API role sees a row. The owner (the relay) bypasses it.
alter table relay.sessions enable row level security;
alter table relay.session_items enable row level security;

-- Supabase grants the API roles broad default privileges (and PostgreSQL lets PUBLIC execute new
-- functions): take everything back, whatever an earlier migration granted on the schema.
revoke all on relay.sessions, relay.session_items from public, anon, authenticated, service_role;
revoke all on function relay.delete_expired_sessions(timestamptz, integer)
  from public, anon, authenticated, service_role;
revoke all on function relay.write_sessions(jsonb, integer)
  from public, anon, authenticated, service_role;
