"""Plaid's official Python client (plaid-python) against finq's simulator.

The client deserialises every answer into its models and refuses one that lacks a field
they require, or has a value of another type: each call below must go through.
Usage: python3 plaid_client_check.py SIMULATOR_BASE_URL
"""

import sys
import time

import plaid
from plaid.api import plaid_api
from plaid.model.accounts_balance_get_request import AccountsBalanceGetRequest
from plaid.model.accounts_get_request import AccountsGetRequest
from plaid.model.country_code import CountryCode
from plaid.model.institutions_get_by_id_request import InstitutionsGetByIdRequest
from plaid.model.item_get_request import ItemGetRequest
from plaid.model.item_public_token_exchange_request import ItemPublicTokenExchangeRequest
from plaid.model.item_remove_request import ItemRemoveRequest
from plaid.model.item_webhook_update_request import ItemWebhookUpdateRequest
from plaid.model.link_token_create_request import LinkTokenCreateRequest
from plaid.model.link_token_create_request_user import LinkTokenCreateRequestUser
from plaid.model.personal_finance_category_version import PersonalFinanceCategoryVersion
from plaid.model.products import Products
from plaid.model.sandbox_item_fire_webhook_request import SandboxItemFireWebhookRequest
from plaid.model.sandbox_item_reset_login_request import SandboxItemResetLoginRequest
from plaid.model.sandbox_public_token_create_request import SandboxPublicTokenCreateRequest
from plaid.model.sandbox_public_token_create_request_options import (
    SandboxPublicTokenCreateRequestOptions,
)
from plaid.model.transactions_refresh_request import TransactionsRefreshRequest
from plaid.model.transactions_sync_request import TransactionsSyncRequest
from plaid.model.transactions_sync_request_options import TransactionsSyncRequestOptions
from plaid.model.webhook_verification_key_get_request import WebhookVerificationKeyGetRequest

HOOK = "http://127.0.0.1:9/unreachable"


def main(base_url):
    configuration = plaid.Configuration(
        host=base_url, api_key={"clientId": "finq-check", "secret": "finq-check-secret"}
    )
    client = plaid_api.PlaidApi(plaid.ApiClient(configuration))
    checked = []

    def call(name, fn, request):
        response = fn(request)
        checked.append(name)
        return response

    call(
        "/link/token/create",
        client.link_token_create,
        LinkTokenCreateRequest(
            client_name="finq",
            language="en",
            country_codes=[CountryCode("US")],
            user=LinkTokenCreateRequestUser(client_user_id="local"),
            products=[Products("transactions")],
            webhook=HOOK,
        ),
    )
    public = call(
        "/sandbox/public_token/create",
        client.sandbox_public_token_create,
        SandboxPublicTokenCreateRequest(
            institution_id="ins_109508",
            initial_products=[Products("transactions")],
            options=SandboxPublicTokenCreateRequestOptions(webhook=HOOK),
        ),
    )
    exchanged = call(
        "/item/public_token/exchange",
        client.item_public_token_exchange,
        ItemPublicTokenExchangeRequest(public_token=public.public_token),
    )
    token = exchanged.access_token
    accounts = call("/accounts/get", client.accounts_get, AccountsGetRequest(access_token=token))
    assert len(accounts.accounts) > 0
    call(
        "/accounts/balance/get",
        client.accounts_balance_get,
        AccountsBalanceGetRequest(access_token=token),
    )
    item = call("/item/get", client.item_get, ItemGetRequest(access_token=token))
    call(
        "/institutions/get_by_id",
        client.institutions_get_by_id,
        InstitutionsGetByIdRequest(
            institution_id=item.item.institution_id, country_codes=[CountryCode("US")]
        ),
    )

    # The whole history, page by page (a fresh item first answers NOT_READY, empty).
    cursor, added, pages = None, 0, 0
    for _ in range(10000):
        kwargs = {"access_token": token, "count": 500,
                  "options": TransactionsSyncRequestOptions(
                      personal_finance_category_version=PersonalFinanceCategoryVersion("v2"))}
        if cursor:
            kwargs["cursor"] = cursor
        page = client.transactions_sync(TransactionsSyncRequest(**kwargs))
        pages += 1
        if str(page.transactions_update_status) == "NOT_READY" and added == 0:
            time.sleep(0.2)
            continue
        added += len(page.added)
        cursor = page.next_cursor
        if not page.has_more:
            break
    assert added > 0, "no transactions"
    checked.append("/transactions/sync")
    call("/transactions/refresh", client.transactions_refresh,
         TransactionsRefreshRequest(access_token=token))
    call("/sandbox/item/fire_webhook", client.sandbox_item_fire_webhook,
         SandboxItemFireWebhookRequest(access_token=token, webhook_code="DEFAULT_UPDATE"))
    call("/item/webhook/update", client.item_webhook_update,
         ItemWebhookUpdateRequest(access_token=token, webhook=HOOK))
    call("/sandbox/item/reset_login", client.sandbox_item_reset_login,
         SandboxItemResetLoginRequest(access_token=token))
    try:
        client.accounts_get(AccountsGetRequest(access_token=token))
        raise AssertionError("accounts/get worked on an item that needs its login")
    except plaid.ApiException as e:
        assert "ITEM_LOGIN_REQUIRED" in str(e.body), e.body
    call("/item/remove", client.item_remove, ItemRemoveRequest(access_token=token))

    # The verification key of a webhook the simulator signed.
    import json, urllib.request
    req = urllib.request.Request(
        base_url + "/sim/webhooks/sign", data=json.dumps({"webhook_type": "ITEM"}).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    jwt = json.load(urllib.request.urlopen(req))["jwt"]
    import base64
    header = json.loads(base64.urlsafe_b64decode(jwt.split(".")[0] + "=="))
    key = call("/webhook_verification_key/get", client.webhook_verification_key_get,
               WebhookVerificationKeyGetRequest(key_id=header["kid"]))
    assert key.key.kid == header["kid"]

    print(f"plaid-python {plaid.__version__}: {len(checked)} calls accepted: {', '.join(checked)}")


if __name__ == "__main__":
    main(sys.argv[1])
