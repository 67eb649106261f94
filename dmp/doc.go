// Package dmp owns the file formats and identifier normalisation of Kith's
// link with a Data Management Platform (DMP) and with ad platforms.
//
// Everything here is a pure function of its input: the package stores
// nothing and speaks no HTTP. It has three parts.
//
//   - Normalisation and hashing of e-mail addresses and phone numbers for
//     customer-list (look-alike seed) uploads, per ad platform:
//     NormaliseEmail, NormaliseEmailFor, NormalisePhone, HashSHA256,
//     HashEmail and HashPhone. Meta and Google differ in two places: Google
//     wants phone numbers in E.164 with the leading '+' and the dots removed
//     from the local part of gmail.com and googlemail.com addresses, while
//     Meta wants the phone digits without the '+' and the e-mail only
//     trimmed and lower-cased.
//   - Seed file writers (SeedWriter) that produce the CSV each platform
//     documents for customer-list file uploads, with hashed values.
//   - A streaming reader (AudienceReader) for third-party audience files a
//     DMP sends to Kith, in CSV or JSON Lines, which reports each bad row as
//     a *RowError and carries on with the next.
//
// Sources for the platform rules, cited again where each rule is applied:
//
//   - Meta, Conversions API customer information parameters (normalisation
//     of em and ph, with published SHA-256 examples):
//     https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/customer-information-parameters
//   - Meta, Customer File Custom Audiences, "Hashing and Normalizing Data":
//     https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences
//   - Meta Business Help Centre, "How to format a customer list when creating
//     a custom audience" (column headers email, phone, madid, fn, ln, ...):
//     https://www.facebook.com/business/help/2082575038703844
//   - Google, Data Manager API, "Format user data" (gmail dot rule, E.164
//     with '+', example (800)555-0100 -> +18005550100):
//     https://developers.google.com/data-manager/api/get-started/formatting
//   - Google Ads API, Customer Match (trim, lower-case; removing gmail dots
//     is accepted):
//     https://developers.google.com/google-ads/api/docs/remarketing/audience-types/customer-match
//   - Google Ads Help, "Formatting guidelines for uploading hashed data"
//     (English headers "Email", "Phone", "First Name", "Last Name",
//     "Country", "Zip"), and the Customer Match CSV template linked from it:
//     https://support.google.com/google-ads/answer/7476159
package dmp
