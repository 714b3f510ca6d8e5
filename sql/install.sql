-- bis installs into schema bis; the object list is the whole API
CREATE EXTENSION bis;
\dx bis
\dx+ bis
-- bis.stock_levels is tracked from the start
SELECT * FROM bis.tracked_tables;
-- the settings exist once the library is loaded
LOAD 'bis';
SELECT name, setting, unit, context, short_desc FROM pg_settings WHERE name LIKE 'bis.%' ORDER BY name;
SET bis.default_threshold = 0;
SET bis.bogus = 1;
