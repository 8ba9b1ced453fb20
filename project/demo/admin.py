from __future__ import annotations

from django.contrib import admin

from project.demo.models import BillingProfile, Transfer


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    list_display = ["company_name", "user", "billing_email", "card_last4", "updated_at"]
    search_fields = ["company_name", "user__username", "billing_email"]


@admin.register(Transfer)
class TransferAdmin(admin.ModelAdmin):
    list_display = ["created_at", "user", "amount", "account"]
    list_filter = ["created_at"]
    search_fields = ["user__username", "account"]
    date_hierarchy = "created_at"
