from django.urls import path

from tests.shop import views

app_name = "shop"

urlpatterns = [
    path("", views.home, name="home"),
    path("billing/", views.billing, name="billing"),
    path("billing/edit/", views.billing_update, name="billing-update"),
    path("transfers/", views.transfer, name="transfer"),
    path("reports/", views.reports_index, name="reports"),
    path("reports/invoices.csv", views.report, name="report"),
    path("team/", views.AccessView.as_view(), name="access"),
    path("profile/", views.profile_update, name="profile"),
]
