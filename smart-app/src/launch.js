// SMART App Launch: EHR launch (iss + launch) or, for an open FHIR server, fhirServiceUrl + patientId.
import { smart } from "./smart.js";

smart.authorize({
  clientId: "jak-cds-monitoring",
  scope: "launch launch/patient openid fhirUser patient/*.read",
  redirectUri: "index.html",
}).catch((error) => {
  const status = document.getElementById("status");
  status.textContent = "The app could not be launched: " + (error && error.message ? error.message : "unknown error");
});
