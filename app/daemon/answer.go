package daemon

import "github.com/ebrainpool/ebrainpool/app/consent"

func consentAnswer(allow, remember bool) consent.Answer {
	return consent.Answer{Allow: allow, Remember: remember}
}
