-- describe.sql: everything extension bis consists of, one line per fact, in an order
-- that does not depend on how it was created (OIDs, creation order and physical
-- column numbers left out).  test/upgrade.sh runs it in a fresh installation and in
-- one upgraded step by step from 0.1, and compares.
\pset tuples_only on
\pset format unaligned
\pset fieldsep ' | '

-- the extension: its schema, version, and what pg_dump keeps
SELECT 'extension', e.extname, e.extnamespace::regnamespace, e.extrelocatable, e.extversion
  FROM pg_extension e WHERE e.extname = 'bis';
SELECT 'config dump', c.tbl::regclass, c.cond
  FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(tbl, cond)
 WHERE e.extname = 'bis' ORDER BY c.tbl::regclass::text;

-- its members
SELECT 'member', pg_describe_object(d.classid, d.objid, d.objsubid)
  FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
 WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'bis'
 ORDER BY pg_describe_object(d.classid, d.objid, d.objsubid);

-- the schema
SELECT 'schema', n.nspname, pg_get_userbyid(n.nspowner), obj_description(n.oid, 'pg_namespace'),
       (SELECT string_agg(format('%s:%s', x.grantee::regrole, x.privilege_type), ',' ORDER BY 1)
          FROM aclexplode(n.nspacl) x)
  FROM pg_namespace n WHERE n.nspname = 'bis';

-- functions: the whole definition, comment and privileges
SELECT 'function', p.oid::regprocedure, pg_get_functiondef(p.oid), obj_description(p.oid, 'pg_proc'),
       (SELECT string_agg(format('%s:%s', CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                 x.privilege_type), ',' ORDER BY 1)
          FROM aclexplode(coalesce(p.proacl, acldefault('f', p.proowner))) x)
  FROM pg_proc p WHERE p.pronamespace = 'bis'::regnamespace ORDER BY p.oid::regprocedure::text;

-- relations (tables, views, sequences, indexes, composite types)
SELECT 'relation', c.oid::regclass, c.relkind, c.reloptions, pg_get_userbyid(c.relowner),
       obj_description(c.oid, 'pg_class'),
       (SELECT string_agg(format('%s:%s', CASE x.grantee WHEN 0 THEN 'PUBLIC' ELSE x.grantee::regrole::text END,
                                 x.privilege_type), ',' ORDER BY 1)
          FROM aclexplode(c.relacl) x)
  FROM pg_class c WHERE c.relnamespace = 'bis'::regnamespace ORDER BY c.oid::regclass::text;
-- columns, in their order
SELECT 'column', c.oid::regclass, row_number() OVER (PARTITION BY c.oid ORDER BY a.attnum),
       a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       pg_get_expr(ad.adbin, ad.adrelid), col_description(c.oid, a.attnum)
  FROM pg_class c
  JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
  LEFT JOIN pg_attrdef ad ON ad.adrelid = c.oid AND ad.adnum = a.attnum
 WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'c')
 ORDER BY c.oid::regclass::text, a.attnum;
SELECT 'constraint', con.conrelid::regclass, con.conname, pg_get_constraintdef(con.oid),
       obj_description(con.oid, 'pg_constraint')
  FROM pg_constraint con JOIN pg_class c ON c.oid = con.conrelid
 WHERE c.relnamespace = 'bis'::regnamespace ORDER BY con.conrelid::regclass::text, con.conname;
SELECT 'index', i.indexrelid::regclass, pg_get_indexdef(i.indexrelid)
  FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid
 WHERE c.relnamespace = 'bis'::regnamespace ORDER BY i.indexrelid::regclass::text;
SELECT 'view', c.oid::regclass, pg_get_viewdef(c.oid)
  FROM pg_class c WHERE c.relnamespace = 'bis'::regnamespace AND c.relkind = 'v' ORDER BY c.oid::regclass::text;
SELECT 'sequence', s.seqrelid::regclass, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement,
       s.seqmax, s.seqmin, s.seqcache, s.seqcycle,
       (SELECT format('%s.%s', d.refobjid::regclass, a.attname)
          FROM pg_depend d JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
         WHERE d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid AND d.deptype = 'a')
  FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
 WHERE c.relnamespace = 'bis'::regnamespace ORDER BY s.seqrelid::regclass::text;
SELECT 'type', t.oid::regtype, t.typtype, obj_description(t.oid, 'pg_type')
  FROM pg_type t WHERE t.typnamespace = 'bis'::regnamespace AND t.typtype <> 'b' ORDER BY t.oid::regtype::text;

-- triggers on bis's tables, and the event trigger
SELECT 'trigger', t.tgrelid::regclass, t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
  FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
 WHERE c.relnamespace = 'bis'::regnamespace AND NOT t.tgisinternal ORDER BY t.tgrelid::regclass::text, t.tgname;
SELECT 'event trigger', e.evtname, e.evtevent, e.evtfoid::regprocedure, e.evtenabled, e.evttags,
       obj_description(e.oid, 'pg_event_trigger')
  FROM pg_event_trigger e WHERE e.evtfoid::regprocedure::text LIKE 'bis.%' ORDER BY e.evtname;

-- the data bis ships: the built-in templates
SELECT 'builtin template', t.kind, t.channel, t.locale, t.subject, t.body, t.body_html
  FROM bis.templates t WHERE t.builtin ORDER BY t.kind, t.channel, t.locale;
