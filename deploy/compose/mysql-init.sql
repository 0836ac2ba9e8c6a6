-- docker-compose's MySQL 8: the demo's source database next to the target (MYSQL_DATABASE=demo_target).
CREATE DATABASE IF NOT EXISTS demo_sources CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON demo_sources.* TO 'etl'@'%';
FLUSH PRIVILEGES;
-- survey_nps_daily's reporting database (connection survey_reporting).
CREATE DATABASE IF NOT EXISTS survey_reporting CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;
GRANT ALL PRIVILEGES ON survey_reporting.* TO 'etl'@'%';
FLUSH PRIVILEGES;
