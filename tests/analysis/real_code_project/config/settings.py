INSTALLED_APPS = ["blog", "forum", "kernel", "plugins.polls", "newer"]
AUTH_USER_MODEL = "kernel.Member"
ROOT_URLCONF = "config.urls"
