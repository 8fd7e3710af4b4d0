-- What a Supabase project's database provides before any migration of ours,
-- for tests on plain PostgreSQL: the API roles and auth.uid()/auth.role()/auth.jwt()
-- reading the request's JWT claims the way PostgREST sets them
-- (set_config('request.jwt.claims', '<json>', true) and `set role authenticated`), and the
-- realtime.messages table whose RLS policies Realtime Authorization checks.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'anon') then
    create role anon nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'authenticated') then
    create role authenticated nologin noinherit;
  end if;
  if not exists (select 1 from pg_roles where rolname = 'service_role') then
    create role service_role nologin noinherit bypassrls;
  end if;
end
$$;

create schema if not exists auth;
grant usage on schema auth to anon, authenticated, service_role;

create or replace function auth.uid() returns uuid
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.sub', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'sub')
  )::uuid
$$;

create or replace function auth.role() returns text
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim.role', true), ''),
    (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> 'role')
  )::text
$$;

create or replace function auth.jwt() returns jsonb
language sql stable
as $$
  select coalesce(
    nullif(current_setting('request.jwt.claim', true), ''),
    nullif(current_setting('request.jwt.claims', true), '')
  )::jsonb
$$;

grant usage on schema public to anon, authenticated, service_role;

-- Supabase lets its `postgres` role act as the API roles (`set role authenticated`, as the
-- relay does to run relay.room_access as the user).
grant anon, authenticated, service_role to postgres;

-- Realtime Authorization (supabase/realtime's tenant migrations): Realtime decides who may join
-- a private channel by selecting (read) and inserting (write) rows of realtime.messages as the
-- user, with `role`, `request.jwt.claims` and `realtime.topic` set for the transaction; the
-- app's RLS policies on this table are the rules. Same columns, partitioning, owner, grants and
-- RLS as Supabase has them, and the default partition Realtime adds; none of Realtime's other
-- objects (Postgres Changes, realtime.send). Re-runnable, like everything above.
do $$
begin
  if not exists (select 1 from pg_roles where rolname = 'supabase_realtime_admin') then
    create role supabase_realtime_admin nologin noinherit noreplication;
  end if;
end
$$;

create schema if not exists realtime;
grant usage on schema realtime to postgres, anon, authenticated, service_role,
  supabase_realtime_admin;

create table if not exists realtime.messages (
  topic text not null,
  extension text not null,
  payload jsonb,
  event text,
  private boolean default false,
  updated_at timestamp without time zone default now() not null,
  inserted_at timestamp without time zone default now() not null,
  id uuid default gen_random_uuid() not null,
  primary key (id, inserted_at)
) partition by range (inserted_at);

create table if not exists realtime.messages_default partition of realtime.messages default;

create or replace function realtime.topic() returns text
language sql stable
as $$
  select nullif(current_setting('realtime.topic', true), '')::text;
$$;

alter table realtime.messages owner to supabase_realtime_admin;
alter function realtime.topic() owner to supabase_realtime_admin;
grant select, insert, update on realtime.messages to postgres, anon, authenticated, service_role;
grant delete, truncate, references, trigger on realtime.messages to postgres;
alter table realtime.messages enable row level security;
