// SMART App Launch: EHR launch (iss + launch) or, for an open FHIR server, fhirServiceUrl + patientId.
import { smart } from "./smart.js";
import { loadTexts, t } from "./texts.js";

const texts = loadTexts().then(() => true, () => false);     // for the status line, while the launch goes on

smart.authorize({
  clientId: "jak-cds-monitoring",
  scope: "launch launch/patient openid fhirUser patient/*.read",
  redirectUri: "index.html",
}).catch(async (error) => {
  const status = document.getElementById("status");
  const why = error && error.message ? error.message : "";
  // without the service's texts, the error as it is (the service is not there to say it in a language)
  status.textContent = (await texts) ? t("launchFailed", { why: why || t("unknownError") }) : why || String(error);
});
