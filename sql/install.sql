-- bis installs into schema bis; the object list is the whole API
CREATE EXTENSION bis;
\dx bis
\dx+ bis
-- bis.stock_levels is tracked from the start
SELECT * FROM bis.tracked_tables;
-- a setting given before the library loads is kept once it loads, as a
-- database's or postgresql.conf's settings are (a new session: none loaded)
\c
SET bis.quiet_hours = '21:00-08:00';
SET bis.max_per_contact_day = 3;
LOAD 'bis';
SHOW bis.quiet_hours;
SHOW bis.max_per_contact_day;
RESET bis.quiet_hours;
RESET bis.max_per_contact_day;
-- the settings exist once the library is loaded
SELECT name, setting, unit, context, short_desc FROM pg_settings WHERE name LIKE 'bis.%' ORDER BY name;
SET bis.default_threshold = 0;
SET bis.bogus = 1;
