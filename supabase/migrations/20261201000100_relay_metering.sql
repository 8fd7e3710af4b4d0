-- Metering and budgets for the relay edge function (CONTRACT.md "Metering and budgets").
-- Apply with `supabase db push`. Runs unchanged on Supabase and on plain PostgreSQL 15+
-- (with Supabase's roles and auth.uid()). The relay connects as the role that applied this
-- migration (postgres, through the transaction pooler): it owns every object here, so it alone
-- writes; signed-in users read their own rows through RLS and public.relay_usage_summary().

create schema if not exists relay;

comment on schema relay is
  'The relay edge function''s metering: usage rows, budgets, per-period spend, session leases.';

-- One row per metered event (a response.done with usage, or a completed input audio
-- transcription with usage). Never updated. The primary key makes a retried write count once.
create table relay.usage (
  user_id uuid not null,
  conn uuid not null,
  model text not null,
  event_id text not null,
  input_tokens integer not null default 0,
  output_tokens integer not null default 0,
  total_tokens integer not null default 0,
  cost_micros bigint not null check (cost_micros >= 0),
  details jsonb not null,
  created_at timestamptz not null default now(),
  primary key (conn, event_id)
);

create index usage_user_created_at on relay.usage (user_id, created_at);

comment on table relay.usage is
  'One row per metered event; cost_micros in millionths of a US dollar; details is the usage object as OpenAI sent it.';

-- A per-user limit that overrides the relay's default (RELAY_BUDGET_USD). Null: unlimited.
create table relay.budgets (
  user_id uuid primary key,
  limit_micros bigint check (limit_micros is null or limit_micros >= 0),
  updated_at timestamptz not null default now()
);

comment on table relay.budgets is
  'Per-user budget overrides in micros per period; limit_micros null means unlimited for that user.';

-- The default limit and period the relay runs with, written by each instance at start, so that
-- public.relay_usage_summary() agrees with what the relay enforces.
create table relay.defaults (
  singleton boolean primary key default true check (singleton),
  limit_micros bigint check (limit_micros is null or limit_micros >= 0),
  period text not null default 'day' check (period in ('day', 'month')),
  updated_at timestamptz not null default now()
);

-- What each user spent per UTC day and per UTC month, kept up to date in the same statement as
-- the usage insert, so admission and refresh read one row instead of summing usage.
create table relay.spend (
  user_id uuid not null,
  period text not null check (period in ('day', 'month')),
  period_start timestamptz not null,
  spent_micros bigint not null default 0 check (spent_micros >= 0),
  primary key (user_id, period, period_start)
);

-- Live sessions across instances (RELAY_MAX_USER_SESSIONS). Each instance renews its own leases
-- while the session lives; a dead instance's leases expire, so its sessions stop counting.
create table relay.leases (
  conn uuid primary key,
  user_id uuid not null,
  instance uuid not null,
  expires_at timestamptz not null
);

create index leases_user_expires_at on relay.leases (user_id, expires_at);
create index leases_instance on relay.leases (instance);

-- Admission in one round trip: the user's spend in the period against their limit (override or
-- default), and, when a session cap is given, a lease taken only while the user holds fewer live
-- ones. A per-user transaction lock makes two instances' concurrent admissions count each other.
create function relay.admit(
  p_user uuid,
  p_conn uuid,
  p_instance uuid,
  p_period text,
  p_period_start timestamptz,
  p_default_limit bigint,
  p_max_sessions integer,
  p_lease_seconds integer
)
returns table (spent_micros bigint, limit_micros bigint, sessions integer, leased boolean)
language plpgsql
set search_path = ''
as $$
declare
  v_spent bigint;
  v_limit bigint;
  v_override boolean;
  v_sessions integer;
begin
  select s.spent_micros into v_spent
    from relay.spend s
    where s.user_id = p_user and s.period = p_period and s.period_start = p_period_start;
  v_spent := coalesce(v_spent, 0);
  select true, b.limit_micros into v_override, v_limit
    from relay.budgets b
    where b.user_id = p_user;
  if v_override is null then
    v_limit := p_default_limit;
  end if;
  if p_max_sessions is null or (v_limit is not null and v_spent >= v_limit) then
    return query select v_spent, v_limit, null::integer, false;
    return;
  end if;
  -- 7243 names the relay's lock space; released at the end of this statement's transaction.
  perform pg_advisory_xact_lock(7243, hashtext(p_user::text));
  select count(*)::integer into v_sessions
    from relay.leases l
    where l.user_id = p_user and l.expires_at > now() and l.conn <> p_conn;
  if v_sessions >= p_max_sessions then
    return query select v_spent, v_limit, v_sessions, false;
    return;
  end if;
  insert into relay.leases (conn, user_id, instance, expires_at)
    values (p_conn, p_user, p_instance, now() + make_interval(secs => p_lease_seconds))
    on conflict (conn) do update set expires_at = excluded.expires_at;
  return query select v_spent, v_limit, v_sessions + 1, true;
end;
$$;

-- The periodic refresh of one instance in one round trip: renews its leases (and drops the ones
-- of sessions it no longer holds, and long-expired ones of dead instances) when leases are in
-- use, and returns the spend and limit of every user it has live sessions for.
create function relay.refresh(
  p_instance uuid,
  p_users uuid[],
  p_lease_conns uuid[],
  p_lease_users uuid[],
  p_period text,
  p_period_start timestamptz,
  p_default_limit bigint,
  p_lease_seconds integer
)
returns table (user_id uuid, spent_micros bigint, limit_micros bigint)
language plpgsql
set search_path = ''
as $$
begin
  if p_lease_seconds is not null then
    insert into relay.leases (conn, user_id, instance, expires_at)
      select t.conn, t.user_id, p_instance, now() + make_interval(secs => p_lease_seconds)
        from unnest(p_lease_conns, p_lease_users) as t(conn, user_id)
      on conflict (conn) do update
        set expires_at = excluded.expires_at, instance = excluded.instance;
    delete from relay.leases l
      where l.instance = p_instance and not (l.conn = any(p_lease_conns));
    delete from relay.leases l
      where l.expires_at < now() - interval '10 minutes';
  end if;
  return query
    select u.id,
           coalesce(s.spent_micros, 0::bigint),
           case when b.user_id is null then p_default_limit else b.limit_micros end
      from unnest(p_users) as u(id)
      left join relay.spend s
        on s.user_id = u.id and s.period = p_period and s.period_start = p_period_start
      left join relay.budgets b on b.user_id = u.id;
end;
$$;

-- What a signed-in user spent this period, their limit (null: unlimited) and what remains, for
-- the app to show: supabase.rpc('relay_usage_summary'). Runs as the owner (security definer) so
-- it can read the relay's defaults; it only ever reads the caller's own rows (auth.uid()).
create function public.relay_usage_summary(
  out period_start timestamptz,
  out spent_micros bigint,
  out limit_micros bigint,
  out remaining_micros bigint
)
language plpgsql
stable
security definer
set search_path = ''
as $$
declare
  v_user uuid := auth.uid();
  v_period text;
  v_default bigint;
  v_override boolean;
begin
  if v_user is null then
    raise exception 'relay_usage_summary: no signed-in user' using errcode = '42501';
  end if;
  select d.period, d.limit_micros into v_period, v_default
    from relay.defaults d
    where d.singleton;
  v_period := coalesce(v_period, 'day');
  period_start := date_trunc(v_period, now(), 'UTC');
  select s.spent_micros into spent_micros
    from relay.spend s
    where s.user_id = v_user and s.period = v_period
      and s.period_start = relay_usage_summary.period_start;
  spent_micros := coalesce(spent_micros, 0);
  select true, b.limit_micros into v_override, limit_micros
    from relay.budgets b
    where b.user_id = v_user;
  if v_override is null then
    limit_micros := v_default;
  end if;
  remaining_micros := case
    when limit_micros is null then null
    else greatest(limit_micros - spent_micros, 0)
  end;
end;
$$;

comment on function public.relay_usage_summary() is
  'The signed-in user''s relay spend for the current period: period_start, spent_micros, limit_micros (null: unlimited), remaining_micros.';

-- Row level security on every table: signed-in users read their own rows; leases have no policy
-- (only the owner, the relay, touches them). The owner bypasses RLS, so the relay needs none.
alter table relay.usage enable row level security;
alter table relay.budgets enable row level security;
alter table relay.defaults enable row level security;
alter table relay.spend enable row level security;
alter table relay.leases enable row level security;

create policy "users read their own usage" on relay.usage
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users read their own budget" on relay.budgets
  for select to authenticated using (user_id = (select auth.uid()));
create policy "users read their own spend" on relay.spend
  for select to authenticated using (user_id = (select auth.uid()));
create policy "signed-in users read the default budget" on relay.defaults
  for select to authenticated using (true);

-- Nobody but the owner writes. Supabase grants the API roles broad default privileges (and
-- PostgreSQL lets PUBLIC execute new functions), so take everything back explicitly, then grant
-- signed-in users reading and the summary.
revoke all on schema relay from public, anon, authenticated, service_role;
revoke all on all tables in schema relay from public, anon, authenticated, service_role;
revoke all on all functions in schema relay from public, anon, authenticated, service_role;
revoke all on function public.relay_usage_summary() from public, anon, authenticated, service_role;

grant usage on schema relay to authenticated;
grant select on relay.usage, relay.budgets, relay.spend, relay.defaults to authenticated;
grant execute on function public.relay_usage_summary() to authenticated;
