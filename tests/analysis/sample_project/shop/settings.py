SECRET_KEY = "sample"
INSTALLED_APPS = ["core", "people", "catalog", "orders.apps.OrdersConfig", "reviews"]
AUTH_USER_MODEL = "people.Member"
ROOT_URLCONF = "shop.urls"
