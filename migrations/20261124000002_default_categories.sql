-- Default categories for the local user, and a home for every Plaid PFC primary
-- (v1 and v2), plus a few detailed codes that people usually want apart.
INSERT INTO categories (user_id, name, is_income) VALUES
    (1, 'Income', true),
    (1, 'Transfers In', false),
    (1, 'Transfers Out', false),
    (1, 'Loans', false),
    (1, 'Bank Fees', false),
    (1, 'Entertainment', false),
    (1, 'Dining', false),
    (1, 'Groceries', false),
    (1, 'Shopping', false),
    (1, 'Home', false),
    (1, 'Health', false),
    (1, 'Personal Care', false),
    (1, 'Services', false),
    (1, 'Taxes & Donations', false),
    (1, 'Transportation', false),
    (1, 'Travel', false),
    (1, 'Housing & Utilities', false),
    (1, 'Other', false),
    (1, 'Uncategorized', false);

INSERT INTO category_mappings (user_id, pfc_primary, pfc_detailed, category_id)
SELECT 1, m.pfc_primary, m.pfc_detailed, c.id
FROM (VALUES
    ('INCOME', '', 'Income'),
    ('TRANSFER_IN', '', 'Transfers In'),
    ('TRANSFER_OUT', '', 'Transfers Out'),
    ('LOAN_PAYMENTS', '', 'Loans'),
    ('LOAN_DISBURSEMENTS', '', 'Loans'),
    ('BANK_FEES', '', 'Bank Fees'),
    ('ENTERTAINMENT', '', 'Entertainment'),
    ('FOOD_AND_DRINK', '', 'Dining'),
    ('FOOD_AND_DRINK', 'FOOD_AND_DRINK_GROCERIES', 'Groceries'),
    ('GENERAL_MERCHANDISE', '', 'Shopping'),
    ('HOME_IMPROVEMENT', '', 'Home'),
    ('MEDICAL', '', 'Health'),
    ('PERSONAL_CARE', '', 'Personal Care'),
    ('GENERAL_SERVICES', '', 'Services'),
    ('GOVERNMENT_AND_NON_PROFIT', '', 'Taxes & Donations'),
    ('TRANSPORTATION', '', 'Transportation'),
    ('TRAVEL', '', 'Travel'),
    ('RENT_AND_UTILITIES', '', 'Housing & Utilities'),
    ('OTHER', '', 'Other')
) AS m (pfc_primary, pfc_detailed, category)
JOIN categories c ON c.user_id = 1 AND c.name = m.category;
