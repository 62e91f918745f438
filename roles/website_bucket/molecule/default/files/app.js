fetch("config.json");
